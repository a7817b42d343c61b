#include "testing/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

extern char** environ;

namespace emp::testing {

std::string ProcessResult::describe() const {
  std::string what = timed_out ? "timed out" : signal ? "signal " + std::to_string(signal) : "exit " + std::to_string(exit_code);
  std::string tail = output.size() > 4000 ? "..." + output.substr(output.size() - 4000) : output;
  return what + "; output:\n" + tail;
}

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                          std::chrono::seconds timeout) {
  ProcessResult result;
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    env[entry.substr(0, entry.find('='))] = entry;
  }
  for (const auto& entry : environment) env[entry.substr(0, entry.find('='))] = entry;
  std::vector<std::string> env_storage;
  for (auto& [name, entry] : env) env_storage.push_back(entry);
  std::vector<char*> envp, args;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = argv;
  for (auto& a : argv_storage) args.push_back(a.data());
  args.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.output = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  auto start = std::chrono::steady_clock::now();
  pid_t pid = -1;
  int error = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (error != 0) {
    ::close(pipe_fds[0]);
    result.output = "spawning " + argv[0] + ": " + std::strerror(error);
    return result;
  }
  auto deadline = start + timeout;
  char buffer[65536];
  int status = 0;
  bool exited = false, eof = false;
  // Until the program has exited and its output is drained (a process it left behind
  // holding the pipe does not keep us waiting), or the timeout.
  for (;;) {
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0 && !exited) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    if (eof) {
      if (exited) break;
      ::usleep(10000);
      continue;
    }
    struct pollfd fd {pipe_fds[0], POLLIN, 0};
    int ready = ::poll(&fd, 1, exited ? 0 : static_cast<int>(std::min<long>(left, 100)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) {
      if (exited) break;  // drained
      continue;
    }
    ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) {
      eof = true;
      continue;
    }
    result.output.append(buffer, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace emp::testing
