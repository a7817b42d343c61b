// The memory path (`--mem-path`, EMP_MEM_PATH): parses "dram:256|10.0.0.2:4096:19675|
// /dev/nvme1n1:1024:0|/var/tmp/emp.tier:4096:0" into a MemPath value. Parsing is pure
// and thread-safe; every error throws MemPathError whose message names the element.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace emp {

inline constexpr uint16_t kDefaultVmdPort = 19675;

struct MemPathError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct TierSpec {
  enum class Kind { kRemote, kDevice, kFile };
  Kind kind = Kind::kFile;
  std::string location;      // host name/address (no brackets) or file/device path
  uint64_t size_bytes = 0;   // capacity taken from this element
  uint64_t offset_bytes = 0; // device/file: where the region starts
  uint16_t port = kDefaultVmdPort;  // remote only
  std::string element;       // the element as written, for messages

  std::string describe() const;
};

struct MemPath {
  std::optional<uint64_t> dram_bytes;  // static budget; nullopt when not given
  bool dram_auto = false;              // dram:auto / dram:-1
  std::vector<TierSpec> tiers;

  uint64_t pool_bytes() const noexcept;
};

// Parses a whole memory path.
MemPath parse_mem_path(std::string_view text);
// Parses only second-tier elements (e.g. emp-bench --tier); "dram:" is rejected.
std::vector<TierSpec> parse_tier_list(std::string_view text);

}  // namespace emp
