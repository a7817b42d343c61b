// LatencyHistogram: a lock-free log-linear histogram of durations in nanoseconds
// (4 buckets per power of two, ~19 % relative resolution, 1 ns .. 2^40 ns). record()
// is wait-free and may be called from any thread; snapshot() copies the counts and the
// sum (for means, so the stages of a path add up).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace emp {

class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 4;
  static constexpr int kPowers = 41;
  static constexpr int kBuckets = kPowers * kSubBuckets;

  struct Snapshot {
    std::array<uint64_t, kBuckets> counts{};
    uint64_t sum_ns = 0;
    uint64_t total() const noexcept;
    double mean_ns() const noexcept;
    // Upper bound of the bucket that holds the p-quantile (0 < p <= 1), in ns.
    uint64_t percentile_ns(double p) const noexcept;
    void merge(const Snapshot& other) noexcept;
    // What was recorded after `earlier` (a snapshot of the same histogram).
    Snapshot since(const Snapshot& earlier) const noexcept;
  };

  void record(uint64_t nanoseconds) noexcept {
    counts_[bucket_of(nanoseconds)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(nanoseconds, std::memory_order_relaxed);
  }
  Snapshot snapshot() const noexcept;

  static int bucket_of(uint64_t nanoseconds) noexcept;
  static uint64_t bucket_upper_ns(int bucket) noexcept;

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace emp
