#include "workloads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
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

// Completes a result whose verification started at `start` and found `bad` (the first
// wrong word, SIZE_MAX for none).
WorkloadResult finish_check(WorkloadResult r, size_t bad, Clock::time_point start) {
  r.verify_seconds = seconds_since(start);
  r.verified = bad == SIZE_MAX;
  if (!r.verified) r.failure = "word " + std::to_string(bad) + " holds a wrong value";
  return r;
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
  using Wide = unsigned __int128;  // count * (t + 1) must not overflow
  return {static_cast<size_t>(Wide{count} * t / threads), static_cast<size_t>(Wide{count} * (t + 1) / threads)};
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

// Stops time-bounded phases: expired() once `seconds` (> 0) have passed since construction;
// never expires when seconds <= 0.
class Deadline {
 public:
  explicit Deadline(double seconds)
      : bounded_(seconds > 0),
        end_(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))) {}
  bool expired() const { return bounded_ && Clock::now() >= end_; }

 private:
  bool bounded_;
  Clock::time_point end_;
};

// Sweeps of each thread's share, one increment per word and sweep. With a duration the
// sweep stops between 64 KiB chunks; the number of words each thread processed gives
// every word's exact expected count.
WorkloadResult run_seq(uint64_t* words, size_t pages, const WorkloadParams& p) {
  constexpr size_t kChunkWords = 16 * kWordsPerPage;
  WorkloadResult r;
  r.unit = "bytes";
  auto start = Clock::now();
  init_pattern(words, pages, p.threads);
  r.init_seconds = seconds_since(start);
  std::vector<uint64_t> done(p.threads, 0);  // words processed by each thread
  // Runs fn(t, begin, end) on each thread t's share of the words (if not empty).
  auto each_share = [&](auto&& fn) {
    parallel(p.threads, [&](unsigned t) {
      auto [begin, end] = share(pages * kWordsPerPage, p.threads, t);
      if (end > begin) fn(t, begin, end);
    });
  };
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  Deadline deadline(p.duration);
  each_share([&](unsigned t, size_t begin, size_t end) {
    size_t length = end - begin;
    uint64_t limit = p.duration > 0 ? UINT64_MAX : uint64_t{p.passes} * length;
    uint64_t count = 0;
    while (count < limit && !deadline.expired()) {
      size_t from = begin + count % length;
      size_t to = std::min(end, from + kChunkWords);
      if (limit - count < to - from) to = from + (limit - count);
      for (size_t w = from; w < to; ++w) words[w] += 1;
      count += to - from;
    }
    done[t] = count;
  });
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  for (uint64_t count : done) r.ops += count * sizeof(uint64_t);
  start = Clock::now();
  std::atomic<size_t> bad{SIZE_MAX};
  each_share([&](unsigned t, size_t begin, size_t end) {
    uint64_t full = done[t] / (end - begin), partial = done[t] % (end - begin);
    for (size_t w = begin; w < end; ++w)
      if (words[w] != pattern(w) + full + (w - begin < partial ? 1 : 0)) {
        record_first(bad, w);
        return;
      }
  });
  return finish_check(r, bad.load(), start);
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
  uint64_t total_ops = p.ops ? p.ops : p.duration > 0 ? UINT64_MAX : 2 * pages;
  std::atomic<size_t> bad{SIZE_MAX};
  std::vector<LatencyHistogram> latency(p.threads);
  // `ops` operations split between the threads (each stops early at the deadline); every
  // `every`-th one timed when `every` > 0. Returns the operations done.
  auto run_ops = [&](uint64_t ops, uint64_t seed, double seconds, unsigned every) {
    Deadline deadline(seconds);
    std::vector<uint64_t> done(p.threads, 0);
    parallel(p.threads, [&](unsigned t) {
      std::mt19937_64 rng(seed * 7919 + t);
      auto [begin, end] = share(ops, p.threads, t);
      uint64_t limit = ops == UINT64_MAX ? UINT64_MAX : end - begin;  // UINT64_MAX: until the deadline
      const uint64_t half = pages / 2;
      uint64_t stream = half * t / p.threads;  // each thread's cursor in the streaming half
      uint64_t op = 0;
      for (; op < limit; ++op) {
        if (op % 64 == 0 && deadline.expired()) break;
        bool timed = every && op % every == 0;
        Clock::time_point before = timed ? Clock::now() : Clock::time_point{};
        uint64_t page;
        if (p.pattern == Pattern::kMixed && op % 2) {
          page = stream % half;  // the streaming half
          ++stream;
        } else if (p.pattern == Pattern::kMixed) {
          page = half + rng() % (pages - half);  // the random half
        } else {
          page = zipf ? (zipf->next(rng) * 2654435761ULL) % pages : rng() % pages;
        }
        uint64_t* base = words + page * kWordsPerPage;
        // Check one random cache line (not word 0, the counter), then count the access.
        size_t line = 1 + rng() % (kWordsPerPage / 8 - 1);
        for (size_t w = line * 8; w < line * 8 + 8; ++w)
          if (base[w] != pattern(page * kWordsPerPage + w)) {
            record_first(bad, page * kWordsPerPage + w);
          }
        __atomic_fetch_add(base, 1, __ATOMIC_RELAXED);
        updates[page].fetch_add(1, std::memory_order_relaxed);
        if (timed)
          latency[t].record(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - before).count()));
      }
      done[t] = op;
    });
    uint64_t total = 0;
    for (uint64_t d : done) total += d;
    return total;
  };
  // Warm-up (not measured): as many operations as pages (at most as many as measured),
  // so the measured phase sees a cache shaped by the access pattern rather than by the
  // sequential initialisation.
  if (p.warmup) run_ops(std::min<uint64_t>(pages, total_ops), p.seed + 1000003, p.duration, 0);
  r.init_seconds = seconds_since(start);
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  r.ops = run_ops(total_ops, p.seed, p.duration, p.latency_every);
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  for (const auto& h : latency) r.latency.merge(h.snapshot());
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
  return finish_check(r, bad.load(), start);
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

// In-place quicksort whose top levels are explicit tasks shared by the threads: a range
// above kLeaf elements is partitioned around a median-of-three pivot (interruptibly, at
// the deadline), smaller ranges are sorted with std::sort. Every range carries the value
// bounds its ancestors' pivots imply, so a sort stopped at the deadline can still be
// verified exactly: each element lies within its range's bounds, finished leaves are
// sorted, and no element was lost or changed (checksum).
class QuickSort {
 public:
  QuickSort(uint64_t* values, size_t count, unsigned threads, double seconds)
      : values_(values), threads_(threads), deadline_(seconds) {
    pending_.push_back({0, count});
  }

  // Sorts (or stops at the deadline); returns the element-passes done.
  uint64_t run() {
    parallel(threads_, [&](unsigned) { work(); });
    for (const Range& r : pending_) done_.push_back(r);  // never started
    pending_.clear();
    return passes_.load();
  }

  // Empty when the state is consistent, else the first problem found.
  std::string verify() const {
    std::vector<std::string> problems(threads_);
    parallel(threads_, [&](unsigned t) {
      for (size_t i = t; i < done_.size() && problems[t].empty(); i += threads_) {
        const Range& r = done_[i];
        for (size_t k = r.begin; k < r.end; ++k) {
          uint64_t v = values_[k];
          if ((r.has_lo && v < r.lo) || (r.has_hi && v >= r.hi)) {
            problems[t] = "element " + std::to_string(k) + " lies outside its partition";
            break;
          }
          if (r.sorted && k > r.begin && values_[k - 1] > v) {
            problems[t] = "element " + std::to_string(k) + " is out of order";
            break;
          }
        }
      }
    });
    for (const auto& problem : problems)
      if (!problem.empty()) return problem;
    return "";
  }

 private:
  static constexpr size_t kLeaf = 1 << 16;
  struct Range {
    size_t begin, end;
    uint64_t lo = 0, hi = 0;  // lo <= value (has_lo), value < hi (has_hi)
    bool has_lo = false, has_hi = false, sorted = false;
  };

  void work() {
    std::unique_lock lock(mutex_);
    while (true) {
      changed_.wait(lock, [&] { return !pending_.empty() || active_ == 0; });
      if (pending_.empty() || deadline_.expired()) break;
      Range range = pending_.back();
      pending_.pop_back();
      ++active_;
      lock.unlock();
      std::vector<Range> children, finished;
      process(range, &children, &finished);
      lock.lock();
      --active_;
      pending_.insert(pending_.end(), children.begin(), children.end());
      done_.insert(done_.end(), finished.begin(), finished.end());
      changed_.notify_all();
    }
    changed_.notify_all();
  }

  void sort_leaf(Range range, std::vector<Range>* finished) {
    size_t n = range.end - range.begin;
    std::sort(values_ + range.begin, values_ + range.end);
    passes_ += static_cast<uint64_t>(static_cast<double>(n) * std::log2(std::max<double>(2, static_cast<double>(n))));
    range.sorted = true;
    finished->push_back(range);
  }

  void process(Range range, std::vector<Range>* children, std::vector<Range>* finished) {
    size_t begin = range.begin, end = range.end;
    if (end - begin <= kLeaf) return sort_leaf(range, finished);
    uint64_t a = values_[begin], b = values_[begin + (end - begin) / 2], c = values_[end - 1];
    uint64_t pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    // [begin, i) < pivot <= [j, end)
    size_t i = begin, j = end;
    uint64_t steps = 0;
    while (i < j) {
      if (++steps % 4096 == 0 && deadline_.expired()) break;
      if (values_[i] < pivot) {
        ++i;
      } else if (values_[j - 1] >= pivot) {
        --j;
      } else {
        std::swap(values_[i], values_[j - 1]);
        ++i;
        --j;
      }
    }
    passes_ += (i - begin) + (end - j);
    if (i < j) return finished->push_back(range);     // stopped at the deadline
    if (i == begin || i == end) return sort_leaf(range, finished);  // no split (duplicates)
    Range left = range, right = range;
    left.end = right.begin = i;
    left.hi = right.lo = pivot;
    left.has_hi = right.has_lo = true;
    children->push_back(left);
    children->push_back(right);
  }

  uint64_t* values_;
  unsigned threads_;
  Deadline deadline_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Range> pending_, done_;
  size_t active_ = 0;
  std::atomic<uint64_t> passes_{0};
};

WorkloadResult run_sort(uint64_t* values, size_t count, const WorkloadParams& p) {
  WorkloadResult r;
  r.unit = "element-passes";
  auto start = Clock::now();
  parallel(p.threads, [&](unsigned t) {
    auto [begin, end] = share(count, p.threads, t);
    for (size_t i = begin; i < end; ++i) values[i] = mix64(i ^ (p.seed << 40));
  });
  Checksum before = checksum(values, count, p.threads);
  r.init_seconds = seconds_since(start);
  if (p.on_run_start) p.on_run_start();
  start = Clock::now();
  QuickSort sort(values, count, p.threads, p.duration);
  r.ops = sort.run();
  r.run_seconds = seconds_since(start);
  if (p.on_run_end) p.on_run_end();
  start = Clock::now();
  r.failure = sort.verify();
  Checksum after = checksum(values, count, p.threads);
  r.verify_seconds = seconds_since(start);
  if (r.failure.empty() && !(before == after)) r.failure = "checksum differs after sorting (elements lost or changed)";
  r.verified = r.failure.empty();
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
  else if (text == "mixed")
    *out = Pattern::kMixed;
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
    case Pattern::kMixed:
      return "mixed";
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
    case Pattern::kMixed:
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
