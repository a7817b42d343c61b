// Data patterns for integrity checks: every 8-byte word of test memory gets a value
// derived from its address index and a version, so any lost, stale or misplaced byte
// is caught. Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/hash.h"

namespace emp::testing {

inline uint64_t pattern_word(size_t word_index, uint64_t version) noexcept {
  return mix64(word_index * 0x9e3779b97f4a7c15ULL + version);
}

// Writes pattern words for [first_word, first_word + words).
void fill_words(uint64_t* base, size_t first_word, size_t words, uint64_t version) noexcept;
// Returns the index of the first word that differs, or SIZE_MAX.
size_t check_words(const uint64_t* base, size_t first_word, size_t words, uint64_t version) noexcept;

}  // namespace emp::testing
