#include "testing/integrity_workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "testing/patterns.h"

namespace emp::testing {
namespace {
constexpr size_t kPage = 4096;
constexpr size_t kWordsPerPage = kPage / 8;
}  // namespace

const char* to_string(Access a) {
  return a == Access::kSequential ? "seq" : a == Access::kRandom ? "rand" : "zipf";
}

// Zipf(theta) over [0, n) by inverse CDF on a precomputed table.
class ZipfTable {
 public:
  ZipfTable(size_t n, double theta) : cdf_(n) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) cdf_[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), theta));
    for (double& c : cdf_) c /= sum;
  }
  size_t sample(std::mt19937_64& rng) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin()) % cdf_.size();
  }

 private:
  std::vector<double> cdf_;
};

// Writes version 1 everywhere, then each thread rewrites pages (version 2 for the pages it
// owns: page % threads == thread) in the given access order, then everything is verified.
void run_integrity_workload(void* memory, size_t bytes, unsigned threads, Access access, uint64_t seed) {
  auto* words = static_cast<uint64_t*>(memory);
  size_t pages = bytes / kPage;
  std::vector<std::atomic<uint32_t>> version(pages);
  for (auto& v : version) v.store(0);
  // Phase 1: parallel sequential initialisation.
  {
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        for (size_t p = t; p < pages; p += threads) {
          fill_words(words, p * kWordsPerPage, kWordsPerPage, 1);
          version[p].store(1, std::memory_order_relaxed);
        }
      });
    for (auto& w : workers) w.join();
  }
  // Phase 2: rewrites in the access order (each thread owns pages p % threads == t).
  ZipfTable zipf(access == Access::kZipf ? pages : 1, 0.99);
  {
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        std::mt19937_64 rng(seed + t);
        size_t ops = pages;
        for (size_t op = 0; op < ops; ++op) {
          size_t p;
          if (access == Access::kSequential) p = op;
          else if (access == Access::kRandom) p = rng() % pages;
          else p = (zipf.sample(rng) * 2654435761ULL) % pages;
          // Verify what is there, then bump the page to the next version if we own it.
          uint32_t v = version[p].load(std::memory_order_relaxed);
          if (p % threads == t) {
            ASSERT_EQ(check_words(words, p * kWordsPerPage, kWordsPerPage, v), SIZE_MAX) << "page " << p;
            fill_words(words, p * kWordsPerPage, kWordsPerPage, v + 1);
            version[p].store(v + 1, std::memory_order_relaxed);
          } else {
            (void)words[p * kWordsPerPage];  // a read fault on someone else's page
          }
        }
      });
    for (auto& w : workers) w.join();
  }
  // Phase 3: verify every byte.
  for (size_t p = 0; p < pages; ++p)
    ASSERT_EQ(check_words(words, p * kWordsPerPage, kWordsPerPage, version[p].load()), SIZE_MAX) << "page " << p;
}

}  // namespace emp::testing
