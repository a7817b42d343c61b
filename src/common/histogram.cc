#include "common/histogram.h"

#include <bit>

namespace emp {

int LatencyHistogram::bucket_of(uint64_t ns) noexcept {
  if (ns < kSubBuckets) return static_cast<int>(ns);
  int power = std::bit_width(ns) - 1;  // ns in [2^power, 2^(power+1))
  int sub = static_cast<int>((ns >> (power - 2)) & (kSubBuckets - 1));
  int bucket = power * kSubBuckets + sub;
  return bucket < kBuckets ? bucket : kBuckets - 1;
}

uint64_t LatencyHistogram::bucket_upper_ns(int bucket) noexcept {
  if (bucket < kSubBuckets) return static_cast<uint64_t>(bucket) + 1;
  int power = bucket / kSubBuckets, sub = bucket % kSubBuckets;
  return (1ULL << power) + (static_cast<uint64_t>(sub + 1) << (power - 2));
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const noexcept {
  Snapshot s;
  for (int i = 0; i < kBuckets; ++i) s.counts[static_cast<size_t>(i)] = counts_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

uint64_t LatencyHistogram::Snapshot::total() const noexcept {
  uint64_t sum = 0;
  for (uint64_t c : counts) sum += c;
  return sum;
}

uint64_t LatencyHistogram::Snapshot::percentile_ns(double p) const noexcept {
  uint64_t all = total();
  if (all == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(p * static_cast<double>(all));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts[static_cast<size_t>(i)];
    if (seen >= rank) return bucket_upper_ns(i);
  }
  return bucket_upper_ns(kBuckets - 1);
}

void LatencyHistogram::Snapshot::merge(const Snapshot& other) noexcept {
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  sum_ns += other.sum_ns;
}

LatencyHistogram::Snapshot LatencyHistogram::Snapshot::since(const Snapshot& earlier) const noexcept {
  Snapshot d = *this;
  for (size_t i = 0; i < counts.size(); ++i) d.counts[i] -= earlier.counts[i];
  d.sum_ns -= earlier.sum_ns;
  return d;
}

double LatencyHistogram::Snapshot::mean_ns() const noexcept {
  uint64_t all = total();
  return all ? static_cast<double>(sum_ns) / static_cast<double>(all) : 0.0;
}

}  // namespace emp
