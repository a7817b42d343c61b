// Benchmark workloads that run on any memory (EMP-managed or plain) and verify it:
// sequential sweep, uniform random page access, Zipf page access and an in-place sort.
// Each workload initialises its memory, runs the measured phase with N threads (for a
// fixed amount of work, or until a time limit), then checks every byte. Used by
// emp-bench; thread-safe per Workload instance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "common/histogram.h"

namespace emp::bench {

// kMixed: every other page operation streams through the first half of the memory, the
// others hit random pages of the second half (one program, two kinds of locality).
enum class Pattern { kSeq, kRand, kZipf, kSort, kMixed };
bool parse_pattern(const std::string& text, Pattern* out);
const char* to_string(Pattern pattern);

struct WorkloadParams {
  Pattern pattern = Pattern::kZipf;
  unsigned threads = 1;
  uint64_t ops = 0;     // rand/zipf: page operations in total (0 = 2 per page)
  unsigned passes = 2;  // seq: sweeps over the whole working set
  double zipf_theta = 0.99;
  uint64_t seed = 1;
  bool warmup = true;   // rand/zipf: one unmeasured operation per page first
  // > 0: the measured phase stops after this many seconds (work done so far is counted
  // and verified exactly); the rand/zipf warm-up is bounded by the same time. For rand and
  // zipf `ops` (when set) still caps the work; seq ignores `passes`.
  double duration = 0;
  unsigned latency_every = 0;  // rand/zipf: time every k-th measured operation (0: none)
  // Called right before and right after the measured phase (e.g. to snapshot counters).
  std::function<void()> on_run_start;
  std::function<void()> on_run_end;
};

struct WorkloadResult {
  bool verified = false;
  std::string failure;   // first mismatch, when not verified
  double init_seconds = 0;
  double run_seconds = 0;
  double verify_seconds = 0;
  uint64_t ops = 0;      // units of work in the measured phase
  // "pages", "bytes" or, for sort, "element-passes": a partitioning pass over n
  // elements counts n, the final sort of a small range n*log2(n) (a whole sort of N
  // elements is about N*log2(N)).
  const char* unit = "";
  LatencyHistogram::Snapshot latency;  // sampled per-operation latency (latency_every)
  double throughput() const { return run_seconds > 0 ? static_cast<double>(ops) / run_seconds : 0; }
};

// Runs the workload on [memory, memory + bytes); bytes is a multiple of 4 KiB.
WorkloadResult run_workload(void* memory, size_t bytes, const WorkloadParams& params);

// Ideal-cache miss probability for `local` of `total` pages (uniform or Zipf, hottest
// pages kept); seq and sort return -1 (no closed form).
double ideal_miss_ratio(Pattern pattern, uint64_t local_pages, uint64_t total_pages, double theta);

}  // namespace emp::bench
