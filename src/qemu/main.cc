// emp-qemu: parses the command line (qemu_args.h) and starts QEMU through `emp run`
// (LD_PRELOAD of libemp.so in guest-RAM mode: EMP_GUEST_RAM names the mapping to manage).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "qemu/qemu_args.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(emp::qemu::usage().c_str(), args.empty() ? stderr : stdout);
    return args.empty() ? emp::cli::kExitUsage : 0;
  }
  try {
    const char* env_qemu = std::getenv("EMP_QEMU");
    emp::qemu::QemuLaunch launch = emp::qemu::parse_qemu_command_line(args, env_qemu ? env_qemu : "");
    ::unsetenv("EMP_QEMU");
    emp::cli::Args run = {"--mem-path", launch.mem_path, "--guest-ram", std::to_string(launch.guest_ram_bytes)};
    if (launch.dry_run) run.push_back("--dry-run");
    run.push_back("--");
    run.push_back(launch.qemu);
    run.insert(run.end(), launch.qemu_args.begin(), launch.qemu_args.end());
    return emp::cli::run_command(run);  // execs QEMU; returns only for --dry-run
  } catch (const emp::cli::RuntimeError& e) {
    std::fprintf(stderr, "emp-qemu: %s\n", e.what());
    return emp::cli::kExitRuntime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emp-qemu: %s\n", e.what());
    return emp::cli::kExitUsage;
  }
}
