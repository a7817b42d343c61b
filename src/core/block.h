// BlockMeta: the per-block state machine of the pager, 16 bytes per block.
//
// One 32-bit atomic word holds the state, the busy bit (the owner of a transition:
// a filler or an evictor), dirty/has-copy flags, the CLOCK heat, the refault frequency,
// the write-prediction streak and the shared-slot flag. Transitions happen only while
// holding busy, taken with a CAS (try_acquire) and released with release(), which wakes
// futex waiters (std::atomic::wait). The busy owner computes the next word with the named
// transitions below (static, constexpr functions from one word to the next; nothing
// outside this header knows the bit layout) and publishes it with release(). `slot` and
// `evicted_epoch` are only written by the busy owner and read by it or after acquiring busy.
//
//   Empty ──fill(zeros)──► Resident ◄──fill(tier)── Evicted        to_resident / to_prefetched
//     ▲                      │ evict: clean+no copy → Empty, else → Evicted    to_evicted
//     └──────────────────────┘        (a range discard: any state → Empty)     to_empty
//   Empty ──take over (pages the kernel populated in a deferred region)──► Resident
//                                                                          to_taken_over
#pragma once

#include <atomic>
#include <cstdint>

#include "tier/slot.h"

namespace emp::core {

enum class BlockState : uint32_t { kEmpty = 0, kResident = 1, kEvicted = 2 };

// How a fill maps the block's pages.
enum class FillMode {
  kProtected,  // clean and write-protected (a read fault): the first write raises a WP fault
  kWritten,    // dirty and writable: a write fault, a proven write
  kPredicted,  // dirty and writable on write prediction alone (a read fault)
};

class BlockMeta {
 public:
  static constexpr uint32_t kMaxHeat = 3;       // CLOCK heat 0..3: sweeps a block survives
  static constexpr uint32_t kMaxFrequency = 3;  // refault frequency 0..3
  // A block that faults back in within this many CLOCK sweeps of its eviction is hot.
  static constexpr uint32_t kRefaultSweeps = 1;
  // Write prediction: a block written in its recent residencies is mapped writable on
  // a read fault (saving the write-protect fault that would follow). The streak (0..3)
  // is set to kWriteStreakProven by a proven write, lowered by one by each eviction of a
  // block mapped writable on prediction alone (so the guess is re-checked at least every
  // third residency), cleared by a clean eviction; writes are predicted from
  // kPredictWritesAt on.
  static constexpr uint32_t kWriteStreakProven = 3;
  static constexpr uint32_t kPredictWritesAt = 2;

  // ---- Queries on a word.
  static constexpr BlockState state_of(uint32_t word) noexcept { return static_cast<BlockState>(word & kStateMask); }
  static constexpr bool is_empty(uint32_t word) noexcept { return state_of(word) == BlockState::kEmpty; }
  static constexpr bool is_resident(uint32_t word) noexcept { return state_of(word) == BlockState::kResident; }
  static constexpr bool is_evicted(uint32_t word) noexcept { return state_of(word) == BlockState::kEvicted; }
  // A thread owns a transition of the block (a fill, an eviction, a range operation).
  static constexpr bool is_busy(uint32_t word) noexcept { return word & kBusy; }
  // The resident content is not in the tier copy (and the pages are writable).
  static constexpr bool is_dirty(uint32_t word) noexcept { return word & kDirty; }
  // The tier slot holds the block's data.
  static constexpr bool has_copy(uint32_t word) noexcept { return word & kHasCopy; }
  // Mapped writable (and dirty) on write prediction alone.
  static constexpr bool is_predicted(uint32_t word) noexcept { return word & kPredicted; }
  // The slot existed when the process forked: a child may still read it, so it is never
  // written again or freed directly (Pool::release_shared; the next write-back takes a
  // new slot).
  static constexpr bool has_shared_slot(uint32_t word) noexcept { return word & kSharedSlot; }
  static constexpr uint32_t heat_of(uint32_t word) noexcept { return (word & kHeatMask) >> kHeatShift; }
  static constexpr bool is_cold(uint32_t word) noexcept { return heat_of(word) == 0; }
  static constexpr uint32_t frequency_of(uint32_t word) noexcept { return (word & kFreqMask) >> kFreqShift; }
  static constexpr uint32_t write_streak_of(uint32_t word) noexcept { return (word & kWriteMask) >> kWriteShift; }
  // An evicted block written in its recent residencies: a read fault maps it writable.
  static constexpr bool predicts_writes(uint32_t word) noexcept {
    return is_evicted(word) && write_streak_of(word) >= kPredictWritesAt;
  }

  // ---- Transitions: the next word, for the busy owner to publish with release().
  // Back to never-touched (a discarded range): everything cleared.
  static constexpr uint32_t to_empty() noexcept { return state_bits(BlockState::kEmpty); }
  // A fault fill: Resident, mapped as `mode` says, with the refault `frequency` (see
  // refault_frequency) as both frequency and starting heat. Has-copy, the shared-slot
  // flag and the write streak (unless a proven write renews it) are kept.
  static constexpr uint32_t to_resident(uint32_t word, FillMode mode, uint32_t frequency) noexcept {
    return with_heat(with_frequency(filled(word, mode), frequency), frequency);
  }
  // A block of a deferred region (core/region.h) whose pages the kernel populated, taken
  // over by EMP: Resident, dirty (memory holds its only copy) and cold (heat 0: the
  // CLOCK's first candidates), no write prediction.
  static constexpr uint32_t to_taken_over(uint32_t word) noexcept {
    return with_heat(filled(word, FillMode::kWritten), 0);
  }
  // A readahead fill: Resident and cold until a fault proves otherwise (heat 0, frequency
  // kept); clean and write-protected, or dirty and writable for a write stream.
  static constexpr uint32_t to_prefetched(uint32_t word, bool as_write) noexcept {
    return filled(word, as_write ? FillMode::kWritten : FillMode::kProtected);
  }
  // An eviction whose pages are dropped: a dirty block was written back, so it now has a
  // copy; a clean one keeps the copy it had (Evicted) or had none (Empty). Dirty, heat and
  // the prediction flag are cleared, the write streak updated (note_clean_eviction,
  // note_predicted_eviction); frequency and the shared-slot flag are kept.
  static constexpr uint32_t to_evicted(uint32_t word) noexcept {
    uint32_t next = word & ~(kStateMask | kDirty | kHeatMask | kPredicted);
    if (!is_dirty(word)) {
      next = note_clean_eviction(next);
    } else {
      if (is_predicted(word)) next = note_predicted_eviction(next);
      next |= kHasCopy;
    }
    return next | state_bits(has_copy(next) ? BlockState::kEvicted : BlockState::kEmpty);
  }
  // The resident content now differs from (or is the only) copy.
  static constexpr uint32_t mark_dirty(uint32_t word) noexcept { return word | kDirty; }
  // A write fault on a resident clean block: dirty, the write proven, one step warmer.
  static constexpr uint32_t mark_written(uint32_t word) noexcept { return warmer(note_write(mark_dirty(word))); }
  // Write-streak updates: a proven write; a clean eviction (no write this residency); the
  // eviction of a dirty block that was mapped writable on prediction alone (the guess
  // loses credit, so it is re-checked with write-protect).
  static constexpr uint32_t note_write(uint32_t word) noexcept { return with_write_streak(word, kWriteStreakProven); }
  static constexpr uint32_t note_clean_eviction(uint32_t word) noexcept { return with_write_streak(word, 0); }
  static constexpr uint32_t note_predicted_eviction(uint32_t word) noexcept {
    uint32_t streak = write_streak_of(word);
    return streak > 0 ? with_write_streak(word, streak - 1) : word;
  }
  // Heat: one step warmer (at most kMaxHeat), or set outright (e.g. kMaxHeat: a block
  // whose write-back failed stays resident, and the next sweeps try other blocks first).
  static constexpr uint32_t warmer(uint32_t word) noexcept {
    return heat_of(word) < kMaxHeat ? with_heat(word, heat_of(word) + 1) : word;
  }
  static constexpr uint32_t with_heat(uint32_t word, uint32_t heat) noexcept {
    return (word & ~kHeatMask) | (heat << kHeatShift);
  }
  // The slot is (or is no longer) shared with forked children; see has_shared_slot.
  static constexpr uint32_t with_shared_slot(uint32_t word) noexcept { return word | kSharedSlot; }
  static constexpr uint32_t clear_shared_slot(uint32_t word) noexcept { return word & ~kSharedSlot; }
  // The block gave up its slot: no copy, nothing shared.
  static constexpr uint32_t without_slot(uint32_t word) noexcept { return word & ~(kSharedSlot | kHasCopy); }
  // A forked child's view of a block its parent held through fork(): no owner, no
  // prediction, and a resident block dirty (fork() dropped the write-protection of the
  // pages: treat them as written).
  static constexpr uint32_t in_forked_child(uint32_t word) noexcept {
    uint32_t next = word & ~(kBusy | kPredicted);
    return is_resident(next) ? mark_dirty(next) : next;
  }

  // Refault frequency of an evicted block faulting back in during CLOCK sweep `epoch`
  // (busy owner): one up if it comes back within kRefaultSweeps sweeps of its eviction
  // (it is hot), else one down.
  uint32_t refault_frequency(uint32_t word, uint32_t epoch) const noexcept {
    uint32_t frequency = frequency_of(word);
    if (epoch - evicted_epoch <= kRefaultSweeps) return frequency < kMaxFrequency ? frequency + 1 : frequency;
    return frequency > 0 ? frequency - 1 : 0;
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
  // Only where no other thread can change the block (a forked child before its engine
  // starts, the parent after fork with its engine threads parked, or the busy owner of a
  // take-over): sets the word, busy bit included, as given.
  void store_unowned(uint32_t word) noexcept { word_.store(word, std::memory_order_relaxed); }

  // CLOCK: lowers the heat of a resident, idle block by one. Returns true if the block
  // was already cold (heat 0) and is a candidate.
  bool cool() noexcept {
    uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (is_busy(word) || !is_resident(word)) return false;
      if (is_cold(word)) return true;
      uint32_t next = with_heat(word, heat_of(word) - 1);
      if (word_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return false;
    }
  }
  // An access signal (e.g. a write fault on a resident block).
  void warm() noexcept {
    uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      uint32_t next = warmer(word);
      if (next == word) return;
      if (word_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return;
    }
  }

  tier::Slot slot{};
  uint32_t evicted_epoch = 0;

 private:
  // The word's layout.
  static constexpr uint32_t kStateMask = 0x3;
  static constexpr uint32_t kBusy = 1u << 2;
  static constexpr uint32_t kDirty = 1u << 3;
  static constexpr uint32_t kHasCopy = 1u << 4;
  static constexpr uint32_t kHeatShift = 5;
  static constexpr uint32_t kHeatMask = 0x3u << kHeatShift;
  static constexpr uint32_t kFreqShift = 7;
  static constexpr uint32_t kFreqMask = 0x3u << kFreqShift;
  static constexpr uint32_t kWriteShift = 9;
  static constexpr uint32_t kWriteMask = 0x3u << kWriteShift;
  static constexpr uint32_t kPredicted = 1u << 11;
  static constexpr uint32_t kSharedSlot = 1u << 12;
  static_assert(kMaxHeat == kHeatMask >> kHeatShift && kMaxFrequency == kFreqMask >> kFreqShift &&
                    kWriteStreakProven <= kWriteMask >> kWriteShift,
                "the limits must fit their fields");

  static constexpr uint32_t state_bits(BlockState state) noexcept { return static_cast<uint32_t>(state); }
  static constexpr uint32_t with_frequency(uint32_t word, uint32_t frequency) noexcept {
    return (word & ~kFreqMask) | (frequency << kFreqShift);
  }
  static constexpr uint32_t with_write_streak(uint32_t word, uint32_t streak) noexcept {
    return (word & ~kWriteMask) | (streak << kWriteShift);
  }
  // Resident, mapped as `mode` says; heat cleared, frequency kept.
  static constexpr uint32_t filled(uint32_t word, FillMode mode) noexcept {
    uint32_t next = (word & ~(kStateMask | kDirty | kHeatMask | kPredicted)) | state_bits(BlockState::kResident);
    switch (mode) {
      case FillMode::kProtected: return next;
      case FillMode::kWritten: return note_write(mark_dirty(next));
      case FillMode::kPredicted: return mark_dirty(next) | kPredicted;
    }
    return next;
  }

  std::atomic<uint32_t> word_{0};
};

static_assert(sizeof(BlockMeta) == 16, "block metadata must stay at 16 bytes (metadata budget)");

}  // namespace emp::core
