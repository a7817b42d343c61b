#include "qemu/qemu_args.h"

#include <stdexcept>

#include "common/mem_path.h"
#include "common/size_parse.h"

namespace emp::qemu {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kQemuDefaultRam = 128 * kMiB;
constexpr uint64_t kQemuRamAlign = 8192;  // QEMU rounds -m up to this

[[noreturn]] void bad(const std::string& message) { throw std::invalid_argument(message); }

// -m [size=]SIZE[,slots=N,maxmem=SIZE]; a bare number is MiB.
uint64_t parse_ram_option(const std::string& value) {
  std::string size_text;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    std::string part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.rfind("size=", 0) == 0) {
      size_text = part.substr(5);
    } else if (part.find('=') == std::string::npos && size_text.empty()) {
      size_text = part;
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  auto bytes = parse_size(size_text, kMiB);
  if (!bytes || *bytes == 0) bad("-m " + value + ": not a memory size");
  return (*bytes + kQemuRamAlign - 1) / kQemuRamAlign * kQemuRamAlign;
}

// The value of `key=` in a comma-separated QEMU property list, or "" when absent.
std::string property_of(const std::string& value, const std::string& key) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    std::string part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.rfind(key + "=", 0) == 0) return part.substr(key.size() + 1);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return "";
}

bool is_on(const std::string& flag) { return flag == "on" || flag == "yes" || flag == "true"; }
bool is_off(const std::string& flag) { return flag == "off" || flag == "no" || flag == "false"; }

// -object memory-backend-*: refuses what EMP cannot manage; returns the backend's size
// (0 when it is not a RAM backend or gives none).
uint64_t check_memory_backend(const std::string& value) {
  std::string type = value.substr(0, value.find(','));
  if (type == "memory-backend-file")
    bad("-object " + type + ": file-backed guest RAM is not EMP-managed; use memory-backend-ram or memory-backend-memfd");
  if (type != "memory-backend-ram" && type != "memory-backend-memfd") return 0;
  if (type == "memory-backend-memfd" && is_on(property_of(value, "hugetlb")))
    bad("-object " + value + ": hugetlb memfd guest RAM is not EMP-managed (drop hugetlb=on)");
  if (type == "memory-backend-memfd" && is_off(property_of(value, "share")))
    bad("-object " + value + ": share=off maps the memfd privately; EMP manages a shared memfd (drop share=off)");
  std::string size = property_of(value, "size");
  if (size.empty()) return 0;
  auto bytes = parse_size(size, 1);
  if (!bytes || *bytes == 0) bad("-object " + value + ": size=" + size + " is not a memory size");
  return (*bytes + kQemuRamAlign - 1) / kQemuRamAlign * kQemuRamAlign;
}

bool takes_value(const std::string& option) {
  // The QEMU options emp-qemu looks into; every other argument passes through unread.
  return option == "-m" || option == "-object" || option == "-machine" || option == "-M" || option == "-mem-path";
}

}  // namespace

QemuLaunch parse_qemu_command_line(const std::vector<std::string>& args, const std::string& qemu_from_env) {
  QemuLaunch launch;
  if (!qemu_from_env.empty()) launch.qemu = qemu_from_env;
  uint64_t backend_bytes = 0;  // a RAM backend's size= (QEMU's RAM size when -m is absent)
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value_of = [&](const std::string& name) -> std::string {
      if (arg.size() > name.size() && arg[name.size()] == '=') return arg.substr(name.size() + 1);
      if (i + 1 >= args.size()) bad(name + " needs a value");
      return args[++i];
    };
    if (arg == "--mem-path" || arg.rfind("--mem-path=", 0) == 0) {
      launch.mem_path = value_of("--mem-path");
      continue;
    }
    if (arg == "--qemu" || arg.rfind("--qemu=", 0) == 0) {
      launch.qemu = value_of("--qemu");
      continue;
    }
    if (arg == "--dry-run") {
      launch.dry_run = true;
      continue;
    }
    if (arg == "-mem-prealloc" || arg == "--mem-prealloc")
      bad(arg + ": preallocation would touch all guest RAM at start; EMP brings it in on demand");
    if (arg == "-mem-path" || arg == "--mem-path-qemu") bad("-mem-path: emp-qemu manages guest RAM itself (drop QEMU's -mem-path)");
    if (takes_value(arg)) {
      if (i + 1 >= args.size()) bad(arg + " needs a value");
      const std::string& value = args[i + 1];
      if (arg == "-m") launch.guest_ram_bytes = parse_ram_option(value);
      if (value.find("prealloc=on") != std::string::npos || value.find("prealloc=yes") != std::string::npos)
        bad(arg + " " + value + ": prealloc would touch all guest RAM at start; EMP brings it in on demand");
      if (arg == "-object")
        if (uint64_t bytes = check_memory_backend(value)) backend_bytes = bytes;
      launch.qemu_args.push_back(arg);
      launch.qemu_args.push_back(value);
      ++i;
      continue;
    }
    launch.qemu_args.push_back(arg);
  }
  if (launch.mem_path.empty()) bad("no memory path: give --mem-path SPEC (see emp-qemu --help)");
  MemPath path = parse_mem_path(launch.mem_path);  // throws naming the element
  if (path.tiers.empty()) bad("--mem-path " + launch.mem_path + ": names no second tier (donor, device or file)");
  if (!launch.guest_ram_bytes) launch.guest_ram_bytes = backend_bytes ? backend_bytes : kQemuDefaultRam;
  uint64_t dram = path.dram_bytes.value_or(0);
  if (launch.guest_ram_bytes > path.pool_bytes() + dram)
    bad("-m " + format_size(launch.guest_ram_bytes) + " is more than local DRAM (" + format_size(dram) +
        ") plus the second tier (" + format_size(path.pool_bytes()) + ") in --mem-path");
  // Identical pages merged by KSM would be shared behind EMP's back.
  launch.qemu_args.push_back("-machine");
  launch.qemu_args.push_back("mem-merge=off");
  return launch;
}

std::string usage() {
  return "usage: emp-qemu --mem-path SPEC [--qemu PATH] [--dry-run] QEMU-ARGUMENTS...\n"
         "\n"
         "Starts the stock qemu-system-x86_64 (--qemu PATH, else $EMP_QEMU, else from PATH) with its\n"
         "guest RAM managed by EMP: local DRAM as the memory path's dram: element says, the rest on\n"
         "its donors, devices or files, e.g.\n"
         "  emp-qemu -m 256G -smp 24 ... --mem-path \"10.10.0.112:131072:19675|/dev/nvme1n1:131072:0|dram:32768\"\n"
         "Every QEMU argument passes through; -machine mem-merge=off is added. Guest RAM is the -m\n"
         "size: plain -m, memory-backend-ram or memory-backend-memfd (shared, not hugetlb); nothing\n"
         "else may map that memfd (no vhost-user). Preallocation and memory-backend-file are refused.\n"
         "EMP_* variables (block size, auth key, ...) apply as for `emp run`; --dry-run prints the\n"
         "environment and the QEMU command instead of running it. `emp ls` and `emp stats` see the\n"
         "QEMU process like any EMP process.\n";
}

}  // namespace emp::qemu
