#include "common/options.h"

#include <algorithm>

#include "common/size_parse.h"

namespace emp {
namespace {

[[noreturn]] void bad(std::string_view name, std::string_view value, std::string_view expected) {
  throw OptionError(std::string(name) + "='" + std::string(value) + "': " + std::string(expected));
}

uint64_t parse_pow2_size(std::string_view name, std::string_view value, uint64_t min, uint64_t max) {
  auto size = parse_size(value);
  std::string range = "expected a power of two from " + format_size(min) + " to " + format_size(max) + " (e.g. 64K)";
  if (!size || !is_power_of_two(*size) || *size < min || *size > max) bad(name, value, range);
  return *size;
}

bool parse_bool(std::string_view name, std::string_view value) {
  if (value == "1" || value == "on" || value == "yes" || value == "true") return true;
  if (value == "0" || value == "off" || value == "no" || value == "false") return false;
  bad(name, value, "expected 0 or 1");
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::vector<OptionInfo> build_table() {
  std::vector<OptionInfo> table;
  table.push_back({"EMP_MEM_PATH", "mem-path", "", "memory path: dram:<MiB>|<host>:<MiB>:<port>|/dev/<dev>:<MiB>:<off>|/<file>:<MiB>:<off>",
                   [](Options& o, std::string_view v) { o.mem_path = parse_mem_path(v); }});
  table.push_back({"EMP_PMEM_PATH", "", "", "alias of EMP_MEM_PATH",
                   [](Options& o, std::string_view v) { o.mem_path = parse_mem_path(v); }});
  table.push_back({"EMP_BLOCK_SIZE", "block-size", "64K", "unit of fault handling, mapping and eviction (4K..2M, power of two)",
                   [](Options& o, std::string_view v) { o.block_size = parse_pow2_size("EMP_BLOCK_SIZE", v, kMinBlockSize, kMaxBlockSize); }});
  table.push_back({"EMP_SUBBLOCK_SIZE", "subblock-size", "16K", "unit of second-tier I/O (4K..128K, power of two, <= block size)",
                   [](Options& o, std::string_view v) { o.subblock_size = parse_pow2_size("EMP_SUBBLOCK_SIZE", v, kMinSubblockSize, kMaxSubblockSize); }});
  table.push_back({"EMP_CSF", "csf", "1", "critical-subblock-first: wake the faulting thread as soon as its subblock is mapped",
                   [](Options& o, std::string_view v) { o.csf = parse_bool("EMP_CSF", v); }});
  table.push_back({"EMP_ELASTIC", "elastic", "0",
                   "choose the fault unit per region from observed spatial locality: from one block (sparse access) "
                   "up to 1M of blocks (clustered or streaming access, either direction)",
                   [](Options& o, std::string_view v) { o.elastic = parse_bool("EMP_ELASTIC", v); }});
  table.push_back({"EMP_PREFETCH", "prefetch", "1",
                   "sequential-stream prefetch: a forward stream of faults fetches a growing window of the next blocks "
                   "(up to 1M) with each fault",
                   [](Options& o, std::string_view v) { o.prefetch = parse_bool("EMP_PREFETCH", v); }});
  table.push_back({"EMP_DEFER", "defer", "1",
                   "an application mapping that fits in the free DRAM budget is served by the kernel (no userfaultfd "
                   "faults) until the budget needs its pages; then EMP takes it over. 0: every mapping faults through "
                   "EMP from its first touch",
                   [](Options& o, std::string_view v) { o.defer = parse_bool("EMP_DEFER", v); }});
  table.push_back({"EMP_REPLICAS", "replicas", "1", "copies of each evicted block on distinct donors (1..3)",
                   [](Options& o, std::string_view v) {
                     auto n = parse_uint(v);
                     if (!n || *n < 1 || *n > 3) bad("EMP_REPLICAS", v, "expected 1, 2 or 3");
                     o.replicas = static_cast<unsigned>(*n);
                   }});
  table.push_back({"EMP_FAULT_THREADS", "fault-threads", "2", "fault-handler threads (1..64)",
                   [](Options& o, std::string_view v) {
                     auto n = parse_uint(v);
                     if (!n || *n < 1 || *n > 64) bad("EMP_FAULT_THREADS", v, "expected 1..64");
                     o.fault_threads = static_cast<unsigned>(*n);
                   }});
  table.push_back({"EMP_TRANSPORT", "transport", "auto",
                   "data path to the donors: auto (shm for a donor on this host, else verbs when the donor "
                   "has an RDMA device, else tcp), tcp, verbs or shm",
                   [](Options& o, std::string_view v) {
                     if (v != "auto" && v != "tcp" && v != "verbs" && v != "shm")
                       bad("EMP_TRANSPORT", v, "expected auto, tcp, verbs or shm");
                     o.transport = std::string(v);
                   }});
  table.push_back({"EMP_AUTH_KEY", "auth-key", "", "key shared with the donors (vmd --auth-key-file)",
                   [](Options& o, std::string_view v) { o.auth_key = std::string(v); }});
  table.push_back({"EMP_AUTH_KEY_FILE", "auth-key-file", "", "file holding the key shared with the donors",
                   [](Options& o, std::string_view v) { o.auth_key_file = std::string(v); }});
  table.push_back({"EMP_LOG_LEVEL", "log-level", "warn", "error, warn, info or debug",
                   [](Options& o, std::string_view v) {
                     if (!log::parse_level(v, &o.log_level)) bad("EMP_LOG_LEVEL", v, "expected error, warn, info or debug");
                   }});
  table.push_back({"EMP_GUEST_RAM", "guest-ram", "0",
                   "set by emp-qemu: manage only the one anonymous mapping of this size (the VM's guest RAM); "
                   "0 manages the heap and every anonymous mapping",
                   [](Options& o, std::string_view v) {
                     auto bytes = parse_size(v);
                     if (!bytes || *bytes % 4096) bad("EMP_GUEST_RAM", v, "expected a size in bytes (K/M/G suffixes), a multiple of 4 KiB");
                     o.guest_ram_bytes = *bytes;
                   }});
  table.push_back({"EMP_STATS", "stats", "0", "1 prints a statistics summary at exit",
                   [](Options& o, std::string_view v) { o.print_stats = parse_bool("EMP_STATS", v); }});
  return table;
}

}  // namespace

void Options::validate() const {
  if (subblock_size > block_size)
    throw OptionError("EMP_SUBBLOCK_SIZE=" + format_size(subblock_size) + " is larger than EMP_BLOCK_SIZE=" +
                      format_size(block_size) + " (a subblock must fit in a block)");
  if (mem_path && replicas > 1 && mem_path->tiers.size() < replicas)
    throw OptionError("EMP_REPLICAS=" + std::to_string(replicas) + " needs at least that many second-tier elements in the memory path");
}

const std::vector<OptionInfo>& option_table() {
  static const std::vector<OptionInfo> table = build_table();
  return table;
}

const OptionInfo* find_option_by_env(std::string_view env_name) {
  for (const auto& info : option_table())
    if (info.env_name == env_name) return &info;
  return nullptr;
}

const OptionInfo* find_option_by_flag(std::string_view flag) {
  for (const auto& info : option_table())
    if (!info.flag.empty() && info.flag == flag) return &info;
  return nullptr;
}

std::string closest_option_name(std::string_view name) {
  std::string_view best;
  size_t best_distance = SIZE_MAX;
  for (const auto& info : option_table()) {
    size_t distance = edit_distance(name, info.env_name);
    if (distance < best_distance) {
      best_distance = distance;
      best = info.env_name;
    }
  }
  return std::string(best);
}

Options options_from_environment(const char* const* envp, std::vector<std::string>* warnings) {
  Options options;
  // EMP_MEM_PATH wins over its alias whatever the order in the environment.
  const OptionInfo* alias = find_option_by_env("EMP_PMEM_PATH");
  std::optional<std::string_view> alias_value;
  bool have_mem_path = false;
  for (const char* const* entry = envp; entry && *entry; ++entry) {
    std::string_view item(*entry);
    if (item.rfind("EMP_", 0) != 0) continue;
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = item.substr(0, eq), value = item.substr(eq + 1);
    const OptionInfo* info = find_option_by_env(name);
    if (!info) {
      if (warnings) warnings->push_back("unknown variable " + std::string(name) + " ignored (did you mean " + closest_option_name(name) + "?)");
      continue;
    }
    if (info == alias) {
      alias_value = value;
      continue;
    }
    if (name == "EMP_MEM_PATH") have_mem_path = true;
    info->apply(options, value);
  }
  if (!have_mem_path && alias_value) alias->apply(options, *alias_value);
  options.validate();
  return options;
}

std::string describe_options() {
  std::string text;
  for (const auto& info : option_table()) {
    text += "  ";
    text += info.env_name;
    text.append(info.env_name.size() < 20 ? 20 - info.env_name.size() : 1, ' ');
    text += info.doc;
    if (!info.default_text.empty()) {
      text += " [default ";
      text += info.default_text;
      text += "]";
    }
    text += "\n";
  }
  return text;
}

}  // namespace emp
