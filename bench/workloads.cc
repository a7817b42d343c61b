#include "workloads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "common/hash.h"

namespace emp::bench {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kWordsPerPage = kPage / sizeof(uint64_t);

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

using emp::mix64;
// Remembers the first failing index (atomically; later failures are ignored).
void record_first(std::atomic<size_t>& bad, size_t index) {
  size_t expected = SIZE_MAX;
  bad.compare_exchange_strong(expected, index);
}

uint64_t pattern(size_t word) {
  return mix64(word * 0x9e3779b97f4a7c15ULL + 0x5eed);
}

template <typename Fn>
void parallel(unsigned threads, Fn&& fn) {
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back(fn, t);
  fn(0u);
  for (auto& w : workers) w.join();
}

// Contiguous share [begin, end) of `count` items for thread t.
std::pair<size_t, size_t> share(size_t count, unsigned threads, unsigned t) {
  return {count * t / threads, count * (t + 1) / threads};
}

void init_pattern(uint64_t* words, size_t pages, unsigned threads) {
  parallel(threads, [&](unsigned t) {
    auto [begin, end] = share(pages, threads, t);
    for (size_t w = begin * kWordsPerPage; w < end * kWordsPerPage; ++w) words[w] = pattern(w);
  });
}

// Zipf(theta) ranks in [0, n) with the Gray et al. constant-time method (as in YCSB).
class ZipfGenerator {
 public:
  ZipfGenerator(uint64_t n, double theta) : n_(n), theta_(theta) {
    double zeta2 = 1 + std::pow(0.5, theta);
    zeta_n_ = 0;
    for (uint64_t i = 1; i <= n; ++i) zeta_n_ += 1.0 / std::pow(static_cast<double>(i), theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1 - std::pow(2.0 / static_cast<double>(n), 1 - theta)) / (1 - zeta2 / zeta_n_);
  }
  uint64_t next(std::mt19937_64& rng) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    double uz = u * zeta_n_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + std::pow(0.5, theta_)) return 1;
    uint64_t rank =
        static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1, alpha_));
    return rank < n_ ? rank : n_ - 1;
  }

 private:
  uint64_t n_;
  double theta_, zeta_n_, alpha_, eta_;
};

WorkloadResult run_seq(uint64_t* words, size_t pages, const WorkloadParams& p) {
  WorkloadResult r;
  r.unit = "bytes";
  auto start = Clock::now();
  init_pattern(words, pages, p.threads);
  r.init_seconds = seconds_since(start);
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  for (unsigned pass = 0; pass < p.passes; ++pass) {
    parallel(p.threads, [&](unsigned t) {
      auto [begin, end] = share(pages, p.threads, t);
      for (size_t w = begin * kWordsPerPage; w < end * kWordsPerPage; ++w) words[w] += 1;
    });
  }
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  r.ops = static_cast<uint64_t>(pages) * kPage * p.passes;
  start = Clock::now();
  std::atomic<size_t> bad{SIZE_MAX};
  parallel(p.threads, [&](unsigned t) {
    auto [begin, end] = share(pages, p.threads, t);
    for (size_t w = begin * kWordsPerPage; w < end * kWordsPerPage; ++w)
      if (words[w] != pattern(w) + p.passes) {
        record_first(bad, w);
        return;
      }
  });
  r.verify_seconds = seconds_since(start);
  r.verified = bad.load() == SIZE_MAX;
  if (!r.verified) r.failure = "word " + std::to_string(bad.load()) + " holds a wrong value";
  return r;
}

WorkloadResult run_pages(uint64_t* words, size_t pages, const WorkloadParams& p) {
  WorkloadResult r;
  r.unit = "pages";
  auto start = Clock::now();
  init_pattern(words, pages, p.threads);
  r.init_seconds = seconds_since(start);
  std::vector<std::atomic<uint32_t>> updates(pages);
  for (auto& u : updates) u.store(0, std::memory_order_relaxed);
  std::unique_ptr<ZipfGenerator> zipf;
  if (p.pattern == Pattern::kZipf) zipf = std::make_unique<ZipfGenerator>(pages, p.zipf_theta);
  uint64_t total_ops = p.ops ? p.ops : 2 * pages;
  std::atomic<size_t> bad{SIZE_MAX};
  // Warm-up (not measured): as many operations as pages (at most as many as measured),
  // so the measured phase sees a cache shaped by the access pattern rather than by the
  // sequential initialisation.
  auto run_ops = [&](uint64_t ops, uint64_t seed) {
    parallel(p.threads, [&](unsigned t) {
      std::mt19937_64 rng(seed * 7919 + t);
      auto [begin, end] = share(ops, p.threads, t);
      for (size_t op = begin; op < end; ++op) {
        uint64_t page = zipf ? (zipf->next(rng) * 2654435761ULL) % pages : rng() % pages;
        uint64_t* base = words + page * kWordsPerPage;
        // Check one random cache line (not word 0, the counter), then count the access.
        size_t line = 1 + rng() % (kWordsPerPage / 8 - 1);
        for (size_t w = line * 8; w < line * 8 + 8; ++w)
          if (base[w] != pattern(page * kWordsPerPage + w)) {
            record_first(bad, page * kWordsPerPage + w);
          }
        __atomic_fetch_add(base, 1, __ATOMIC_RELAXED);
        updates[page].fetch_add(1, std::memory_order_relaxed);
      }
    });
  };
  if (p.warmup) run_ops(std::min<uint64_t>(pages, total_ops), p.seed + 1000003);
  r.init_seconds = seconds_since(start);
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  run_ops(total_ops, p.seed);
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  r.ops = total_ops;
  start = Clock::now();
  parallel(p.threads, [&](unsigned t) {
    auto [begin, end] = share(pages, p.threads, t);
    for (size_t page = begin; page < end; ++page) {
      const uint64_t* base = words + page * kWordsPerPage;
      if (base[0] !=
          pattern(page * kWordsPerPage) + updates[page].load(std::memory_order_relaxed)) {
        record_first(bad, page * kWordsPerPage);
      }
      for (size_t w = 1; w < kWordsPerPage; ++w)
        if (base[w] != pattern(page * kWordsPerPage + w)) {
          record_first(bad, page * kWordsPerPage + w);
        }
    }
  });
  r.verify_seconds = seconds_since(start);
  r.verified = bad.load() == SIZE_MAX;
  if (!r.verified) r.failure = "word " + std::to_string(bad.load()) + " holds a wrong value";
  return r;
}

struct Checksum {
  uint64_t sum = 0, mixed = 0;
  void add(uint64_t v) {
    sum += v;
    mixed += mix64(v);
  }
  bool operator==(const Checksum&) const = default;
};

Checksum checksum(const uint64_t* values, size_t count, unsigned threads) {
  std::vector<Checksum> parts(threads);
  parallel(threads, [&](unsigned t) {
    auto [begin, end] = share(count, threads, t);
    for (size_t i = begin; i < end; ++i) parts[t].add(values[i]);
  });
  Checksum total;
  for (const auto& part : parts) {
    total.sum += part.sum;
    total.mixed += part.mixed;
  }
  return total;
}

// In place: partition into `parts` ranges around sampled pivots (no extra buffer),
// then sort the ranges in parallel.
void parallel_sort(uint64_t* values, size_t count, unsigned threads) {
  std::vector<std::pair<size_t, size_t>> ranges{{0, count}};
  while (ranges.size() < threads) {
    auto widest = std::max_element(ranges.begin(), ranges.end(), [](auto a, auto b) {
      return a.second - a.first < b.second - b.first;
    });
    auto [begin, end] = *widest;
    if (end - begin < 2) break;
    uint64_t pivot = values[begin + (end - begin) / 2];
    uint64_t* middle =
        std::partition(values + begin, values + end, [&](uint64_t v) { return v < pivot; });
    size_t split = static_cast<size_t>(middle - values);
    if (split == begin || split == end) break;
    *widest = {begin, split};
    ranges.push_back({split, end});
  }
  std::vector<std::thread> workers;
  for (size_t i = 1; i < ranges.size(); ++i)
    workers.emplace_back(
        [&, i] { std::sort(values + ranges[i].first, values + ranges[i].second); });
  std::sort(values + ranges[0].first, values + ranges[0].second);
  for (auto& w : workers) w.join();
}

WorkloadResult run_sort(uint64_t* values, size_t count, const WorkloadParams& p) {
  WorkloadResult r;
  r.unit = "elements";
  auto start = Clock::now();
  parallel(p.threads, [&](unsigned t) {
    auto [begin, end] = share(count, p.threads, t);
    for (size_t i = begin; i < end; ++i) values[i] = mix64(i ^ (p.seed << 40));
  });
  Checksum before = checksum(values, count, p.threads);
  r.init_seconds = seconds_since(start);
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  parallel_sort(values, count, p.threads);
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  r.ops = count;
  start = Clock::now();
  bool sorted = std::is_sorted(values, values + count);
  Checksum after = checksum(values, count, p.threads);
  r.verify_seconds = seconds_since(start);
  r.verified = sorted && before == after;
  if (!sorted)
    r.failure = "output is not sorted";
  else if (!(before == after))
    r.failure = "checksum differs after sorting (elements lost or changed)";
  return r;
}

}  // namespace

bool parse_pattern(const std::string& text, Pattern* out) {
  if (text == "seq")
    *out = Pattern::kSeq;
  else if (text == "rand")
    *out = Pattern::kRand;
  else if (text == "zipf")
    *out = Pattern::kZipf;
  else if (text == "sort")
    *out = Pattern::kSort;
  else
    return false;
  return true;
}

const char* to_string(Pattern pattern) {
  switch (pattern) {
    case Pattern::kSeq:
      return "seq";
    case Pattern::kRand:
      return "rand";
    case Pattern::kZipf:
      return "zipf";
    case Pattern::kSort:
      return "sort";
  }
  return "?";
}

WorkloadResult run_workload(void* memory, size_t bytes, const WorkloadParams& params) {
  auto* words = static_cast<uint64_t*>(memory);
  size_t pages = bytes / kPage;
  switch (params.pattern) {
    case Pattern::kSeq:
      return run_seq(words, pages, params);
    case Pattern::kSort:
      return run_sort(words, bytes / sizeof(uint64_t), params);
    case Pattern::kRand:
    case Pattern::kZipf:
      return run_pages(words, pages, params);
  }
  return {};
}

double ideal_miss_ratio(Pattern pattern, uint64_t local_pages, uint64_t total_pages, double theta) {
  if (total_pages == 0) return 0;
  if (local_pages >= total_pages) return 0;
  if (pattern == Pattern::kRand)
    return 1.0 - static_cast<double>(local_pages) / static_cast<double>(total_pages);
  if (pattern == Pattern::kZipf) {
    double h_local = 0, h_total = 0;
    for (uint64_t i = 1; i <= total_pages; ++i) {
      double term = 1.0 / std::pow(static_cast<double>(i), theta);
      h_total += term;
      if (i <= local_pages) h_local += term;
    }
    return 1.0 - h_local / h_total;
  }
  return -1;
}

}  // namespace emp::bench
