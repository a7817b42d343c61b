#include "vmd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace emp::testing {

const char* vmd_path() { return EMP_VMD_PATH; }

net::Provider test_provider() {
  const char* value = std::getenv("EMP_TEST_PROVIDER");
  if (value && *value)
    if (auto provider = net::parse_provider(value)) return *provider;
  return net::Provider::kTcp;
}

int time_scale() {
  const char* value = std::getenv("EMP_TEST_TIME_SCALE");
  int scale = value ? std::atoi(value) : 1;
  return scale >= 1 ? scale : 1;
}

std::string test_host() {
  const char* value = std::getenv("EMP_TEST_HOST");
  return value && *value ? value : "127.0.0.1";
}

std::vector<std::string> vmd_device_args() {
  std::vector<std::string> args;
  const char* device = std::getenv("EMP_TEST_DEVICE");
  if (test_provider() == net::Provider::kVerbs && device && *device) {
    args = {"-d", device, "--bind", test_host(), "--insecure"};
  } else {
    args = {"-d", "tcp"};
    if (test_host() != "127.0.0.1") args.insert(args.end(), {"--bind", test_host(), "--insecure"});
  }
  return args;
}

TierSpec remote_spec(uint16_t port, uint64_t mib) {
  TierSpec spec;
  spec.kind = TierSpec::Kind::kRemote;
  spec.location = test_host();
  spec.port = port;
  spec.size_bytes = mib << 20;
  spec.element = spec.location + ":" + std::to_string(mib) + ":" + std::to_string(port);
  return spec;
}

std::string write_key_file(const std::string& key) {
  static int counter = 0;
  std::string path = "/tmp/emp-test-key-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  {
    std::ofstream out(path);
    out << key << "\n";
  }
  ::chmod(path.c_str(), 0600);
  static std::vector<std::string>* files = new std::vector<std::string>();
  files->push_back(path);
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit([] {
      for (const auto& f : *files) ::unlink(f.c_str());
    });
  }
  return path;
}

std::unique_ptr<VmdProcess> VmdProcess::start(const std::vector<std::string>& args, std::string* error,
                                              uint16_t port) {
  if (::access(vmd_path(), X_OK) != 0) {
    *error = std::string("vmd binary not found at ") + vmd_path() + " (build the 'vmd' target)";
    return nullptr;
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *error = "pipe failed";
    return nullptr;
  }
  std::vector<std::string> all = {vmd_path()};
  all.insert(all.end(), args.begin(), args.end());
  bool has_port = false;
  for (const auto& a : args) has_port |= a == "-p";
  if (!has_port) all.insert(all.end(), {"-p", std::to_string(port)});
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  std::unique_ptr<VmdProcess> process(new VmdProcess());
  process->pid_ = pid;
  // Read until the start-up line "vmd: serving N MiB on port P (...)" or exit.
  std::string seen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int fd = pipe_fds[0];
  while (std::chrono::steady_clock::now() < deadline) {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) break;
    seen.push_back(c);
    if (c == '\n') {
      size_t at = seen.rfind("vmd: serving ");
      if (at != std::string::npos) {
        size_t p = seen.find(" on port ", at);
        if (p != std::string::npos) process->port_ = static_cast<uint16_t>(std::atoi(seen.c_str() + p + 9));
        break;
      }
    }
  }
  {
    std::lock_guard lock(process->mu_);
    process->log_ = seen;
  }
  process->reader_ = std::thread([raw = process.get(), fd] { raw->drain(fd); });
  if (process->port_ == 0) {
    process->kill_hard();
    *error = "vmd did not start: " + process->log();
    return nullptr;
  }
  return process;
}

void VmdProcess::drain(int fd) {
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    if (log_.size() < (1 << 20)) log_.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
}

bool VmdProcess::alive() const {
  std::lock_guard lock(mu_);
  if (exited_) return false;
  int status = 0;
  return ::waitpid(pid_, &status, WNOHANG) == 0;
}

int VmdProcess::stop() {
  {
    std::lock_guard lock(mu_);
    if (exited_) return status_;
  }
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      std::lock_guard lock(mu_);
      exited_ = true;
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      return status_;
    }
    ::usleep(25'000);
  }
  kill_hard();
  return -1;
}

void VmdProcess::kill_hard() {
  {
    std::lock_guard lock(mu_);
    if (exited_) return;
    exited_ = true;
    status_ = -1;
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  // A killed vmd cannot remove its shared-memory endpoint (libfabric shm names it
  // /dev/shm/<pid>:0:0); tests leave nothing behind.
  std::string endpoint = "/dev/shm/" + std::to_string(pid_) + ":0:0";
  ::unlink(endpoint.c_str());
}

std::string VmdProcess::log() const {
  std::lock_guard lock(mu_);
  return log_;
}

VmdProcess::~VmdProcess() {
  stop();
  if (reader_.joinable()) reader_.join();
}

}  // namespace emp::testing
