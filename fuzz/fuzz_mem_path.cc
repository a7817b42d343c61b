// Fuzz target: the memory-path parser (EMP_MEM_PATH, --mem-path) and the size and
// number parsers under it. Any input must parse or throw MemPathError; never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/mem_path.h"
#include "common/size_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    emp::MemPath path = emp::parse_mem_path(text);
    (void)path;
  } catch (const emp::MemPathError&) {
  }
  (void)emp::parse_size(text);
  (void)emp::parse_size(text, 1 << 20);
  (void)emp::parse_uint(text);
  return 0;
}
