// The integrity workload of the engine tests: initialise every page, rewrite pages in
// sequential, uniform-random or Zipf order from several threads (each page owned by one
// thread, read by all), then verify every byte. Failures are gtest assertions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emp::testing {

enum class Access { kSequential, kRandom, kZipf };
const char* to_string(Access access);

void run_integrity_workload(void* memory, size_t bytes, unsigned threads, Access access, uint64_t seed);

}  // namespace emp::testing
