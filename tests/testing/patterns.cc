#include "testing/patterns.h"

namespace emp::testing {

void fill_words(uint64_t* base, size_t first_word, size_t words, uint64_t version) noexcept {
  for (size_t i = first_word; i < first_word + words; ++i) base[i] = pattern_word(i, version);
}

size_t check_words(const uint64_t* base, size_t first_word, size_t words, uint64_t version) noexcept {
  for (size_t i = first_word; i < first_word + words; ++i)
    if (base[i] != pattern_word(i, version)) return i;
  return SIZE_MAX;
}

}  // namespace emp::testing
