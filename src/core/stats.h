// Engine counters (atomics bumped on the fault and eviction paths) and EngineStats,
// the plain snapshot the API, emp-bench and `emp stats` read. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/histogram.h"
#include "core/stages.h"
#include "tier/tier.h"

namespace emp::core {

struct EngineCounters {
  std::atomic<uint64_t> faults_zero{0};      // first touch: zeros, no I/O
  std::atomic<uint64_t> faults_fetch{0};     // block read from the second tier
  std::atomic<uint64_t> faults_write_protect{0};  // first write to a clean resident block
  std::atomic<uint64_t> faults_local{0};     // already resident (raced with a fill): wake only
  std::atomic<uint64_t> prefetched{0};       // blocks filled ahead of a fault (readahead)
  std::atomic<uint64_t> evictions_clean{0};  // dropped without I/O
  std::atomic<uint64_t> evictions_dirty{0};  // written back, then dropped
  std::atomic<uint64_t> evictions_direct{0}; // done on the fault path (budget exhausted)
  std::atomic<uint64_t> io_errors{0};
  std::atomic<uint64_t> write_protect_calls{0};  // eviction freezes (each one TLB shootdown)
  std::atomic<uint64_t> drop_calls{0};           // eviction unmaps (each one TLB shootdown)
  std::atomic<uint64_t> peak_resident{0};
  std::atomic<uint64_t> takeovers{0};            // deferred regions taken over (Engine::take_over_deferred)
  LatencyHistogram fault_latency;            // every missing fault, read to wake
  LatencyHistogram fetch_latency;            // faults that read the second tier
  StageHistograms<FaultStage> fault_stages;  // fetching faults, stage by stage
  StageHistograms<EvictStage> evict_stages;  // eviction batches, stage by stage
};

struct TierStats {
  std::string name;
  std::string health;
  uint64_t capacity = 0;
  tier::TierCounters counters;
};

struct EngineStats {
  uint64_t faults_zero = 0, faults_fetch = 0, faults_write_protect = 0, faults_local = 0, prefetched = 0;
  uint64_t evictions_clean = 0, evictions_dirty = 0, evictions_direct = 0, io_errors = 0;
  uint64_t write_protect_calls = 0, drop_calls = 0;
  // The kernel paths in use (probed at start): how evicted pages are dropped, how dirty
  // victims are frozen.
  std::string unmap_path, write_protect_path;
  uint64_t resident_bytes = 0, budget_bytes = 0, peak_resident_bytes = 0;
  uint64_t managed_bytes = 0, metadata_bytes = 0, regions = 0;
  uint64_t deferred_bytes = 0, takeovers = 0;  // regions the kernel serves until the budget needs them
  uint64_t pool_capacity = 0, pool_reserved = 0;
  uint64_t bytes_read = 0, bytes_written = 0;
  LatencyHistogram::Snapshot fault_latency, fetch_latency;
  StageSnapshots<FaultStage> fault_stages{};
  StageSnapshots<EvictStage> evict_stages{};
  std::vector<TierStats> tiers;

  uint64_t faults() const noexcept { return faults_zero + faults_fetch + faults_local; }
  std::string to_json() const;
  // {"acquire":{"count":..,"mean_us":..,"p50_us":..,"p99_us":..},...} and one text line each.
  std::string fault_stages_json() const;
  std::string evict_stages_json() const;
  std::string fault_stages_text() const;
  std::string evict_stages_text() const;
  std::string to_text() const;
};

}  // namespace emp::core
