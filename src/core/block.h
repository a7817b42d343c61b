// BlockMeta: the per-block state machine of the pager, 16 bytes per block.
//
// One 32-bit atomic word holds the state, the busy bit (the owner of a transition:
// a filler or an evictor), dirty/has-copy flags and the CLOCK heat. Transitions happen
// only while holding busy, taken with a CAS (try_acquire) and released with release(),
// which wakes futex waiters (std::atomic::wait). `slot` and `evicted_epoch` are only
// written by the busy owner and read by it or after acquiring busy.
//
//   Empty ──fill(zeros)──► Resident ◄──fill(tier)── Evicted
//     ▲                      │ evict: clean+no copy → Empty, else → Evicted
//     └──────────────────────┘
#pragma once

#include <atomic>
#include <cstdint>

#include "tier/pool.h"

namespace emp::core {

enum class BlockState : uint32_t { kEmpty = 0, kResident = 1, kEvicted = 2 };

class BlockMeta {
 public:
  static constexpr uint32_t kStateMask = 0x3;
  static constexpr uint32_t kBusy = 1u << 2;
  static constexpr uint32_t kDirty = 1u << 3;    // resident content not in the tier copy
  static constexpr uint32_t kHasCopy = 1u << 4;  // the tier slot holds the block's data
  static constexpr uint32_t kHeatShift = 5;      // CLOCK heat 0..3
  static constexpr uint32_t kHeatMask = 0x3u << kHeatShift;
  static constexpr uint32_t kFreqShift = 7;      // refault frequency 0..3
  static constexpr uint32_t kFreqMask = 0x3u << kFreqShift;
  static constexpr uint32_t kMaxHeat = 3;
  // Write prediction: a block written in its recent residencies is mapped writable on
  // a read fault (saving the write-protect fault that would follow). The streak (0..3)
  // is set to 3 by a proven write, lowered by one by each eviction of a block mapped
  // writable on prediction alone (so the guess is re-checked), cleared by a clean one.
  static constexpr uint32_t kWriteShift = 9;
  static constexpr uint32_t kWriteMask = 0x3u << kWriteShift;
  static constexpr uint32_t kPredicted = 1u << 11;  // mapped writable on prediction
  static constexpr uint32_t kPredictWritesAt = 2;
  // The slot existed when the process forked: a child may still read it, so it is never
  // written again or freed directly (Pool::release_shared; the next write-back takes a new slot).
  static constexpr uint32_t kSharedSlot = 1u << 12;

  static BlockState state_of(uint32_t word) noexcept { return static_cast<BlockState>(word & kStateMask); }
  static uint32_t heat_of(uint32_t word) noexcept { return (word & kHeatMask) >> kHeatShift; }
  static uint32_t freq_of(uint32_t word) noexcept { return (word & kFreqMask) >> kFreqShift; }
  static uint32_t write_streak_of(uint32_t word) noexcept { return (word & kWriteMask) >> kWriteShift; }
  static uint32_t with_write_streak(uint32_t word, uint32_t streak) noexcept {
    return (word & ~kWriteMask) | (streak << kWriteShift);
  }

  uint32_t load() const noexcept { return word_.load(std::memory_order_acquire); }

  // Takes the busy bit if the block is not busy; returns the word seen before.
  bool try_acquire(uint32_t* seen) noexcept {
    uint32_t word = word_.load(std::memory_order_acquire);
    while (!(word & kBusy)) {
      if (word_.compare_exchange_weak(word, word | kBusy, std::memory_order_acquire)) {
        *seen = word;
        return true;
      }
    }
    *seen = word;
    return false;
  }
  // Takes the busy bit, waiting (futex) while another thread holds it; returns the word
  // seen when it was taken.
  uint32_t acquire() noexcept {
    uint32_t word;
    while (!try_acquire(&word)) wait_not_busy();
    return word;
  }
  // Blocks until the busy bit is clear (futex wait).
  void wait_not_busy() const noexcept {
    uint32_t word = word_.load(std::memory_order_acquire);
    while (word & kBusy) {
      word_.wait(word, std::memory_order_acquire);
      word = word_.load(std::memory_order_acquire);
    }
  }
  // Publishes `word` (busy cleared) and wakes waiters.
  void release(uint32_t word) noexcept {
    word_.store(word & ~kBusy, std::memory_order_release);
    word_.notify_all();
  }
  // Only where no other thread can touch the block (a forked child before its engine
  // starts): sets the word, busy bit included, as given.
  void store_unowned(uint32_t word) noexcept { word_.store(word, std::memory_order_relaxed); }
  // Busy owner only: update flags while keeping busy.
  void store_busy(uint32_t word) noexcept { word_.store(word | kBusy, std::memory_order_relaxed); }

  // CLOCK: lowers the heat of a resident, idle block by one. Returns true if the block
  // was already cold (heat 0) and is a candidate.
  bool cool() noexcept {
    uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      if ((word & kBusy) || state_of(word) != BlockState::kResident) return false;
      uint32_t heat = heat_of(word);
      if (heat == 0) return true;
      uint32_t next = (word & ~kHeatMask) | ((heat - 1) << kHeatShift);
      if (word_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return false;
    }
  }
  // An access signal (e.g. a write fault on a resident block).
  void warm() noexcept {
    uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (heat_of(word) == kMaxHeat) return;
      uint32_t next = word + (1u << kHeatShift);
      if (word_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return;
    }
  }

  tier::Slot slot{};
  uint32_t evicted_epoch = 0;

 private:
  std::atomic<uint32_t> word_{0};
};

static_assert(sizeof(BlockMeta) == 16, "block metadata must stay at 16 bytes (metadata budget)");

}  // namespace emp::core
