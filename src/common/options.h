// The option table: every EMP_* tunable, its default, unit and documentation, in one
// place. The engine, `emp run` flags, emp-bench and `--help` all read this table.
// Validation names the bad key and value (throws OptionError). Pure; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/mem_path.h"

namespace emp {

struct OptionError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

inline constexpr uint64_t kMinBlockSize = 4096;
inline constexpr uint64_t kMaxBlockSize = 2ULL << 20;
inline constexpr uint64_t kMinSubblockSize = 4096;
inline constexpr uint64_t kMaxSubblockSize = 128ULL << 10;

struct Options {
  uint64_t block_size = 64ULL << 10;
  uint64_t subblock_size = 16ULL << 10;
  bool csf = true;
  bool elastic = false;
  bool prefetch = true;
  bool defer = true;  // memory that fits in the budget is served by the kernel until needed
  unsigned replicas = 1;
  unsigned fault_threads = 2;
  std::string transport = "auto";  // auto (the donor's own: verbs or tcp), tcp, verbs, shm
  std::string auth_key;
  std::string auth_key_file;
  log::Level log_level = log::Level::kWarn;
  bool print_stats = false;
  uint64_t guest_ram_bytes = 0;  // emp-qemu: only the guest-RAM mapping is managed
  std::optional<MemPath> mem_path;

  // Checks cross-field rules (subblock <= block, ...); throws OptionError.
  void validate() const;
};

struct OptionInfo {
  std::string_view env_name;   // "EMP_BLOCK_SIZE"
  std::string_view flag;       // "block-size" (for `emp run --block-size`)
  std::string_view default_text;
  std::string_view doc;
  std::function<void(Options&, std::string_view)> apply;  // throws OptionError
};

const std::vector<OptionInfo>& option_table();
const OptionInfo* find_option_by_env(std::string_view env_name);
const OptionInfo* find_option_by_flag(std::string_view flag);

// Builds Options from an environment (e.g. `environ`): applies every known EMP_*
// variable, validates, and returns warnings for unknown EMP_* names (each naming the
// closest known one). Throws OptionError (naming the variable) or, for a bad memory
// path, MemPathError (naming the element); both are std::invalid_argument.
Options options_from_environment(const char* const* envp, std::vector<std::string>* warnings);

// The closest known EMP_* name to `name` (edit distance), for "did you mean" messages.
std::string closest_option_name(std::string_view name);

// "--help"-style text listing every option.
std::string describe_options();

}  // namespace emp
