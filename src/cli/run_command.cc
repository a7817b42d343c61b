// emp run: validates the memory path and every option, exports them as EMP_* variables,
// prepends libemp.so to LD_PRELOAD and execs the command.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "cli/cli.h"
#include "common/options.h"

extern char** environ;

namespace emp::cli {
namespace {

// Boolean options (EMP_CSF, ...) may be given as a bare flag (--csf) or negated (--no-csf).
bool is_boolean_option(const OptionInfo& info) {
  if (info.default_text != "0" && info.default_text != "1") return false;
  Options probe;
  try {
    info.apply(probe, "on");
  } catch (const std::exception&) {
    return false;
  }
  try {
    info.apply(probe, "not-a-boolean");
  } catch (const std::exception&) {
    return true;
  }
  return false;
}

std::string directory_of_self() {
  char path[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return ".";
  path[n] = '\0';
  std::string self(path);
  size_t slash = self.find_last_of('/');
  return slash == std::string::npos ? "." : self.substr(0, slash);
}

bool readable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), R_OK) == 0;
}

std::string absolute(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) ? std::string(resolved) : path;
}

std::string find_preload(const std::string& override_path) {
  if (!override_path.empty()) {
    if (!readable_file(override_path)) throw RuntimeError("the preload library " + override_path + " is not a readable file");
    return absolute(override_path);
  }
  std::string dir = directory_of_self();
  std::string searched;
  for (const char* relative : {"/../preload/libemp.so", "/../lib/libemp.so", "/../lib/emp/libemp.so", "/../lib64/libemp.so"}) {
    std::string candidate = dir + relative;
    if (readable_file(candidate)) return absolute(candidate);
    searched += (searched.empty() ? "" : ", ") + candidate;
  }
  throw RuntimeError("cannot find libemp.so (looked at " + searched + "); give it with --preload PATH or EMP_PRELOAD");
}

}  // namespace

std::string run_help() {
  std::string text =
      "usage: emp run --mem-path SPEC [OPTIONS] [--] COMMAND [ARGS...]\n"
      "\n"
      "Runs COMMAND with its heap and anonymous memory managed by EMP: sets EMP_MEM_PATH and\n"
      "the EMP_* variables below from the flags, prepends libemp.so to LD_PRELOAD and execs\n"
      "COMMAND (which keeps this process id). Everything is validated first; a bad value stops\n"
      "with one line naming it (exit status 2) and nothing runs. Flags not given keep the\n"
      "value of the matching EMP_* variable already in the environment, if any.\n"
      "\n"
      "  --mem-path SPEC        memory path, e.g. \"dram:1024|10.0.0.2:8192:19675|/var/tmp/emp.tier:4096:0\"\n"
      "                         (sizes in MiB; dram:auto follows the cgroup limit and host memory\n"
      "                         pressure). Required unless EMP_MEM_PATH is set.\n";
  for (const auto& info : option_table()) {
    if (info.flag.empty() || info.flag == "mem-path") continue;
    std::string left = "  --" + std::string(info.flag) + (is_boolean_option(info) ? "[=0|1]" : " VALUE");
    if (left.size() < 25) left.append(25 - left.size(), ' ');
    else left += ' ';
    text += left + std::string(info.doc) + " (" + std::string(info.env_name);
    if (!info.default_text.empty()) text += ", default " + std::string(info.default_text);
    text += ")\n";
  }
  text +=
      "                         boolean options also accept --no-FLAG; --FLAG=VALUE works for all\n"
      "  --preload PATH         libemp.so to preload (default: EMP_PRELOAD, else next to emp:\n"
      "                         ../preload/libemp.so in a build tree, ../lib/libemp.so or\n"
      "                         ../lib/emp/libemp.so when installed)\n"
      "  --dry-run              validate and print the environment and command instead of running\n"
      "\n"
      "exit status: 2 bad option or memory path, 1 libemp.so not found, 127/126 COMMAND not\n"
      "found/not executable; otherwise COMMAND's own status.\n";
  return text;
}

int run_command(const Args& args) {
  std::map<std::string, std::string> values;  // env name -> value, from flags
  std::string preload_override;
  bool dry_run = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.rfind("-", 0) != 0) break;  // the command starts here
    if (arg == "--help" || arg == "-h") {
      std::fputs(run_help().c_str(), stdout);
      return 0;
    }
    if (arg.rfind("--", 0) != 0) throw UsageError("unknown option '" + arg + "'");
    std::string flag = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() {
      if (has_value) return;
      if (i + 1 >= args.size()) throw UsageError("--" + flag + " needs a value");
      value = args[++i];
      has_value = true;
    };
    if (flag == "preload") {
      take_value();
      preload_override = value;
      continue;
    }
    if (flag == "dry-run") {
      dry_run = true;
      continue;
    }
    const OptionInfo* info = find_option_by_flag(flag);
    bool negated = false;
    if (!info && flag.rfind("no-", 0) == 0) {
      info = find_option_by_flag(flag.substr(3));
      negated = info && is_boolean_option(*info);
      if (!negated) info = nullptr;
    }
    if (!info) throw UsageError("unknown option '--" + flag + "'");
    if (negated) {
      if (has_value) throw UsageError("--" + flag + " takes no value");
      value = "0";
    } else if (is_boolean_option(*info)) {
      if (!has_value) value = "1";
    } else {
      take_value();
    }
    values[std::string(info->env_name)] = value;
  }
  Args command(args.begin() + static_cast<long>(i), args.end());
  if (command.empty()) throw UsageError("no command to run (emp run --mem-path SPEC -- COMMAND [ARGS...])");

  // The environment the command will see, validated exactly as libemp.so will read it.
  for (const auto& [name, value] : values) ::setenv(name.c_str(), value.c_str(), 1);
  if (values.count("EMP_MEM_PATH")) ::unsetenv("EMP_PMEM_PATH");
  std::string env_override = std::getenv("EMP_PRELOAD") ? std::getenv("EMP_PRELOAD") : "";
  ::unsetenv("EMP_PRELOAD");  // ours, not libemp.so's
  std::vector<std::string> warnings;
  Options options;
  try {
    options = options_from_environment(environ, &warnings);
  } catch (const std::invalid_argument& e) {  // OptionError, MemPathError
    throw UsageError(e.what());
  }
  if (!options.mem_path) throw UsageError("no memory path: give --mem-path SPEC (or set EMP_MEM_PATH)");
  if (!options.auth_key_file.empty() && !readable_file(options.auth_key_file))
    throw UsageError("EMP_AUTH_KEY_FILE='" + options.auth_key_file + "': not a readable file");
  for (const auto& warning : warnings) std::fprintf(stderr, "emp run: warning: %s\n", warning.c_str());

  std::string preload = find_preload(preload_override.empty() ? env_override : preload_override);
  const char* existing = std::getenv("LD_PRELOAD");
  std::string ld_preload = preload;
  if (existing && *existing) {
    std::string old(existing);
    bool present = (":" + old + ":").find(":" + preload + ":") != std::string::npos;
    ld_preload = present ? old : preload + ":" + old;
  }
  ::setenv("LD_PRELOAD", ld_preload.c_str(), 1);

  if (dry_run) {
    for (char** entry = environ; *entry; ++entry)
      if (std::strncmp(*entry, "EMP_", 4) == 0 || std::strncmp(*entry, "LD_PRELOAD=", 11) == 0) std::printf("%s\n", *entry);
    for (size_t k = 0; k < command.size(); ++k) std::printf("%s%s", k ? " " : "", command[k].c_str());
    std::printf("\n");
    return 0;
  }
  std::vector<char*> argv;
  for (auto& word : command) argv.push_back(word.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execvp(argv[0], argv.data());
  int error = errno;
  std::fprintf(stderr, "emp run: cannot execute '%s': %s\n", command[0].c_str(), std::strerror(error));
  return error == ENOENT ? 127 : 126;
}

}  // namespace emp::cli
