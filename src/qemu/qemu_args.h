// QemuLaunch: what emp-qemu makes of its command line. It takes every
// qemu-system-x86_64 argument plus its own (--mem-path SPEC, --qemu PATH, --dry-run),
// finds the guest RAM size QEMU will allocate (-m, default 128 MiB, rounded as QEMU
// rounds it; a RAM backend's size when -m is absent), refuses what cannot work on
// EMP-managed RAM (preallocation, memory-backend-file, hugetlb or private memfds, QEMU's
// own -mem-path, more RAM than local DRAM plus the second tier), and
// returns QEMU's argument list with -machine mem-merge=off added. Pure; throws
// std::invalid_argument with a message naming the argument.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace emp::qemu {

struct QemuLaunch {
  std::string mem_path;            // --mem-path SPEC
  std::string qemu = "qemu-system-x86_64";  // --qemu PATH, else EMP_QEMU, else from PATH
  bool dry_run = false;            // --dry-run: print the environment and command only
  uint64_t guest_ram_bytes = 0;
  std::vector<std::string> qemu_args;  // what QEMU gets (without argv[0])
};

// `args` excludes argv[0]; `qemu_from_env` is EMP_QEMU (or empty).
QemuLaunch parse_qemu_command_line(const std::vector<std::string>& args, const std::string& qemu_from_env);

std::string usage();

}  // namespace emp::qemu
