// emp: run programs under EMP and inspect or resize running EMP processes.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/cli.h"
#include "common/size_parse.h"
#include "control/control_client.h"

namespace emp::cli {

pid_t parse_pid(std::string_view text) {
  auto value = parse_uint(text);
  if (!value || *value == 0 || *value > 0x3fffffff) throw UsageError("'" + std::string(text) + "' is not a process id");
  return static_cast<pid_t>(*value);
}

bool wants_help(const Args& args) {
  for (const auto& arg : args) {
    if (arg == "--") return false;
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

namespace {

constexpr const char* kMainHelp =
    "emp - Elastic Memory Platform: far memory for unmodified programs\n"
    "\n"
    "usage:\n"
    "  emp run --mem-path SPEC [OPTIONS] -- COMMAND [ARGS...]\n"
    "                               run COMMAND with its memory managed by EMP (LD_PRELOAD=libemp.so)\n"
    "  emp ls [--json]              list the EMP processes on this node (as root: every user's)\n"
    "  emp stats PID [--json] [--watch [SECONDS]]\n"
    "                               counters of one EMP process\n"
    "  emp resize PID --dram SIZE|auto\n"
    "                               change its local DRAM budget at run time\n"
    "  emp donors PID [--json]      state of its second-tier elements (remote donors, devices, files)\n"
    "  emp top [--plain] [--interval SECONDS] [--iterations N] [--sort KEY]\n"
    "                               live view of every EMP process (q quits)\n"
    "  emp metrics [--listen ADDR:PORT]\n"
    "                               every EMP process's counters in the Prometheus text format\n"
    "  emp help [COMMAND]           this text, or one command's (also: emp COMMAND --help)\n"
    "\n"
    "Each EMP process serves a control socket that only its user and root may open:\n"
    "$XDG_RUNTIME_DIR/emp/<pid>.sock, else /tmp/emp-<uid>/<pid>.sock (see docs/operations.md).\n"
    "\n"
    "exit status: 0 success, 1 the command failed (no such process, not an EMP process,\n"
    "permission denied, ...), 2 bad command line; emp run: the command's own status once it runs.\n";

struct Command {
  const char* name;
  int (*run)(const Args&);
  std::string (*help)();
};

constexpr Command kCommands[] = {
    {"run", run_command, run_help},          {"ls", ls_command, ls_help},
    {"stats", stats_command, stats_help},    {"resize", resize_command, resize_help},
    {"donors", donors_command, donors_help}, {"metrics", metrics_command, metrics_help},
    {"top", top_command, top_help},
};

const Command* find_command(std::string_view name) {
  for (const auto& command : kCommands)
    if (name == command.name) return &command;
  return nullptr;
}

}  // namespace
}  // namespace emp::cli

int main(int argc, char** argv) {
  using namespace emp::cli;
  if (argc < 2) {
    std::fputs(kMainHelp, stderr);
    return kExitUsage;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    if (name == "help" && argc > 2) {
      const Command* command = find_command(argv[2]);
      if (!command) {
        std::fprintf(stderr, "emp: unknown command '%s' (try 'emp --help')\n", argv[2]);
        return kExitUsage;
      }
      std::fputs(command->help().c_str(), stdout);
      return 0;
    }
    std::fputs(kMainHelp, stdout);
    return 0;
  }
  if (name == "--version") {
    std::puts("emp 0.1.0");
    return 0;
  }
  const Command* command = find_command(name);
  if (!command) {
    std::fprintf(stderr, "emp: unknown command '%s' (commands: run, ls, stats, resize, donors; try 'emp --help')\n",
                 name.c_str());
    return kExitUsage;
  }
  Args args(argv + 2, argv + argc);
  // `emp run` looks for --help itself (`emp run -- CMD --help` is the command's).
  if (name != "run" && wants_help(args)) {
    std::fputs(command->help().c_str(), stdout);
    return 0;
  }
  try {
    return command->run(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "emp %s: %s (try 'emp %s --help')\n", name.c_str(), e.what(), name.c_str());
    return kExitUsage;
  } catch (const emp::control::ControlClientError& e) {
    std::fprintf(stderr, "emp %s: %s\n", name.c_str(), e.what());
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emp %s: %s\n", name.c_str(), e.what());
    return kExitRuntime;
  }
}
