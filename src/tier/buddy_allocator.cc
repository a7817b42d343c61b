#include "tier/buddy_allocator.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace emp::tier {

BuddyAllocator::BuddyAllocator(uint64_t capacity_bytes, Start start) {
  uint64_t units = capacity_bytes / kUnit;
  if (units >= kNone) throw std::invalid_argument("tier larger than 16 TiB");
  units_ = static_cast<uint32_t>(units);
  size_t bytes = static_cast<size_t>(units_) * (2 * sizeof(uint32_t) + 1) + kUnit;
  auto mapping = os::Mapping::anonymous(bytes);
  throw_if_error(mapping.status());
  storage_ = std::move(*mapping);
  next_ = reinterpret_cast<uint32_t*>(storage_.data());
  prev_ = next_ + units_;
  free_order_ = reinterpret_cast<int8_t*>(prev_ + units_);  // all 0 (not free): a fresh mapping
  for (uint32_t& head : heads_) head = kNone;
  if (start == Start::kNoneFree) return;
  // Whole 2 MiB extents are free implicitly, from the frontier on (allocate() takes them
  // in order when the lists run dry): a large tier's allocator touches no bookkeeping
  // page until it is used. Only the ragged tail goes on the lists now.
  constexpr uint32_t kMaxUnits = 1U << kMaxOrder;
  implicit_end_ = units_ & ~(kMaxUnits - 1);
  free_units_ = implicit_end_;
  uint32_t position = implicit_end_;
  while (position < units_) {
    int order = kMaxOrder;
    while (order > 0 && ((position & ((1U << order) - 1)) != 0 || position + (1U << order) > units_)) --order;
    push(position, order);
    position += 1U << order;
  }
}

int BuddyAllocator::order_for(uint64_t bytes) noexcept {
  uint64_t units = (bytes + kUnit - 1) / kUnit;
  if (units <= 1) return 0;
  return std::bit_width(units - 1);
}

uint64_t BuddyAllocator::rounded_size(uint64_t bytes) noexcept { return kUnit << order_for(bytes); }

void BuddyAllocator::push(uint32_t unit, int order) noexcept {
  next_[unit] = heads_[order];
  prev_[unit] = kNone;
  if (heads_[order] != kNone) prev_[heads_[order]] = unit;
  heads_[order] = unit;
  free_order_[unit] = static_cast<int8_t>(order + 1);
  free_units_ += 1U << order;
}

void BuddyAllocator::remove(uint32_t unit, int order) noexcept {
  if (prev_[unit] != kNone) next_[prev_[unit]] = next_[unit];
  else heads_[order] = next_[unit];
  if (next_[unit] != kNone) prev_[next_[unit]] = prev_[unit];
  free_order_[unit] = 0;
  free_units_ -= 1U << order;
}

std::optional<uint64_t> BuddyAllocator::allocate(uint64_t bytes) noexcept {
  int wanted = order_for(bytes);
  if (wanted > kMaxOrder) return std::nullopt;
  std::lock_guard lock(mutex_);
  int order = wanted;
  while (order <= kMaxOrder && heads_[order] == kNone) ++order;
  uint32_t unit;
  if (order <= kMaxOrder) {
    unit = heads_[order];
    remove(unit, order);
  } else if (frontier_ < implicit_end_) {
    order = kMaxOrder;
    unit = frontier_;
    frontier_ += 1U << kMaxOrder;
    free_units_ -= 1U << kMaxOrder;
  } else {
    return std::nullopt;
  }
  while (order > wanted) {
    --order;
    push(unit + (1U << order), order);
  }
  return static_cast<uint64_t>(unit) * kUnit;
}

std::optional<BuddyAllocator::Extent> BuddyAllocator::take_up_to(uint64_t bytes) noexcept {
  for (int order = std::min(order_for(bytes), kMaxOrder); order >= 0; --order) {
    uint64_t size = kUnit << order;
    if (auto offset = allocate(size)) return Extent{*offset, size};
  }
  return std::nullopt;
}

void BuddyAllocator::release(uint64_t offset, uint64_t bytes) noexcept {
  int order = order_for(bytes);
  uint32_t unit = static_cast<uint32_t>(offset / kUnit);
  std::lock_guard lock(mutex_);
  while (order < kMaxOrder) {
    uint32_t buddy = unit ^ (1U << order);
    if (buddy + (1U << order) > units_ || free_order_[buddy] != order + 1) break;
    remove(buddy, order);
    unit = unit < buddy ? unit : buddy;
    ++order;
  }
  push(unit, order);
}

uint64_t BuddyAllocator::free_bytes() const noexcept {
  std::lock_guard lock(mutex_);
  return free_units_ * kUnit;
}

}  // namespace emp::tier
