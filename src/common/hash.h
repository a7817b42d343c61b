// mix64: a fast 64-bit finaliser (MurmurHash3's fmix64) for data patterns, checksums and
// scrambling keys in tests and benchmarks. Pure, thread-safe.
#pragma once

#include <cstdint>

namespace emp {

constexpr uint64_t mix64(uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace emp
