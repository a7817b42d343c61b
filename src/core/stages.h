// Stage accounting of the fault and eviction paths: where every microsecond goes.
//
// A missing fault passes through named stages (FaultStage) from the moment its message
// is read to the moment the faulting thread is woken; an eviction batch through its own
// (EvictStage). A StageClock laps from one stage to the next and records each lap into
// that stage's histogram; the histograms keep sums too, so the stage means add up to the
// path's mean. `emp stats`, its JSON and emp-bench's JSON show them
// (docs/performance.md reads them). Recording is wait-free; any thread may record.
#pragma once

#include <time.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/histogram.h"

namespace emp::core {

inline uint64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// The stages of one missing fault, in order.
enum class FaultStage : unsigned {
  kAcquire,   // message read → block's busy bit taken (waits for a fill or eviction of it)
  kCharge,    // → DRAM budget charged (including any wait for room)
  kTierRead,  // → second-tier read completed (zero for a first touch)
  kInstall,   // → UFFDIO_COPY done and the faulting thread woken
  kCount
};
// The stages of one eviction batch, in order.
enum class EvictStage : unsigned {
  kSelect,        // CLOCK chose the victims
  kWriteProtect,  // dirty victims frozen (write-protected)
  kCopy,          // copied to staging memory
  kWriteBack,     // written to the second tier
  kUnmap,         // pages dropped (one TLB shootdown per batch where the kernel allows)
  kCount
};

inline constexpr std::array<const char*, static_cast<size_t>(FaultStage::kCount)> kFaultStageNames = {
    "acquire", "charge", "tier_read", "install"};
inline constexpr std::array<const char*, static_cast<size_t>(EvictStage::kCount)> kEvictStageNames = {
    "select", "write_protect", "copy", "write_back", "unmap"};

template <typename Stage>
struct StageHistograms {
  std::array<LatencyHistogram, static_cast<size_t>(Stage::kCount)> stages;
  LatencyHistogram& operator[](Stage stage) noexcept { return stages[static_cast<size_t>(stage)]; }
};
template <typename Stage>
using StageSnapshots = std::array<LatencyHistogram::Snapshot, static_cast<size_t>(Stage::kCount)>;

template <typename Stage>
StageSnapshots<Stage> snapshot_of(const StageHistograms<Stage>& histograms) noexcept {
  StageSnapshots<Stage> out;
  for (size_t i = 0; i < out.size(); ++i) out[i] = histograms.stages[i].snapshot();
  return out;
}

// Laps through the stages of one fault or batch: lap(stage) adds the time since the
// previous lap to that stage, finish() records every stage once (stages not passed
// record zero, so each histogram counts every fault or batch). A null target records
// nothing (readahead and maintenance reuse the fault path's code without timing it).
template <typename Stage>
class StageClock {
 public:
  StageClock() noexcept = default;
  StageClock(StageHistograms<Stage>* target, uint64_t start_ns) noexcept : target_(target), last_ns_(start_ns) {}
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;
  ~StageClock() { finish(); }
  void lap(Stage stage) noexcept {
    if (!target_) return;
    uint64_t now = monotonic_ns();
    elapsed_[static_cast<size_t>(stage)] += now - last_ns_;
    last_ns_ = now;
  }
  void finish() noexcept {
    if (!target_) return;
    for (size_t i = 0; i < elapsed_.size(); ++i) target_->stages[i].record(elapsed_[i]);
    target_ = nullptr;
  }

 private:
  StageHistograms<Stage>* target_ = nullptr;
  uint64_t last_ns_ = 0;
  std::array<uint64_t, static_cast<size_t>(Stage::kCount)> elapsed_{};
};
using FaultClock = StageClock<FaultStage>;
using EvictClock = StageClock<EvictStage>;

}  // namespace emp::core
