// Slot: where a block's copy lives in the second tier — a tier of the Pool and an offset
// in it — packed in 64 bits so the block table stays at 16 bytes per block (core/block.h).
// Slots are handed out by Pool::allocate (tier/pool.h) and addressed only through the
// Pool. A plain value: copying and reading it is the owner's business (the block's busy
// holder, see core/block.h).
#pragma once

#include <cstdint>

#include "os/page.h"

namespace emp::tier {

struct Slot {
  // Layout: the low kTierBits bits are the tier's index in the pool, the rest the offset
  // in kOffsetUnit units (slots start on tier-alignment boundaries, tier/tier.h).
  static constexpr unsigned kTierBits = 8;
  static constexpr uint64_t kTierMask = (uint64_t{1} << kTierBits) - 1;
  static constexpr unsigned kMaxTiers = kTierMask;  // kTierMask itself is left to kNone
  static constexpr uint64_t kOffsetUnit = os::kPageSize;
  static constexpr uint64_t kNone = ~0ULL;
  uint64_t packed = kNone;

  static constexpr Slot make(unsigned tier, uint64_t offset) noexcept {
    return Slot{(offset / kOffsetUnit) << kTierBits | tier};
  }
  constexpr bool valid() const noexcept { return packed != kNone; }
  constexpr unsigned tier() const noexcept { return static_cast<unsigned>(packed & kTierMask); }
  constexpr uint64_t offset() const noexcept { return (packed >> kTierBits) * kOffsetUnit; }
};

static_assert(sizeof(Slot) == 8, "a slot must stay at 64 bits (core/block.h)");

}  // namespace emp::tier
