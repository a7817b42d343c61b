#include "core/region.h"

#include <sys/mman.h>

#include <new>

#include "os/raw_syscalls.h"
#include "tier/buddy_allocator.h"

namespace emp::core {

Region::Region(uintptr_t base, size_t length, uint64_t block_size, uint64_t subblock_size, bool owns_memory)
    : base_(base),
      length_(length),
      block_size_(block_size),
      subblock_size_(subblock_size),
      first_block_start_(base & ~(block_size - 1)),
      block_count_((base + length - first_block_start_ + block_size - 1) / block_size),
      owns_memory_(owns_memory) {
  size_t zones = ((length - 1) >> kLocalityZoneShift) + 1;
  size_t zones_offset = (block_count_ * sizeof(BlockMeta) + alignof(FaultLocality) - 1) / alignof(FaultLocality) *
                        alignof(FaultLocality);
  table_bytes_ = zones_offset + zones * sizeof(FaultLocality);
  std::byte* table = nullptr;
  if (table_bytes_ <= kSmallTableBytes) {
    small_table_.reset(new std::byte[table_bytes_]());
    table = small_table_.get();
  } else {
    auto mapping = os::Mapping::anonymous(table_bytes_);
    throw_if_error(mapping.status());
    table_ = std::move(*mapping);
    table = table_.data();
  }
  blocks_ = new (table) BlockMeta[block_count_];
  zones_ = new (table + zones_offset) FaultLocality[zones];
}

Region::~Region() {
  if (owns_memory_) os::Mapping::unmap(reinterpret_cast<void*>(base_), length_);
}

int Region::drop_pages(uintptr_t start, size_t length) const noexcept {
  return os::raw_madvise(reinterpret_cast<void*>(start), length, shared_memory_ ? MADV_REMOVE : MADV_DONTNEED);
}

BlockRange Region::block_range(size_t index) const noexcept {
  uintptr_t start = first_block_start_ + index * block_size_;
  uintptr_t stop = start + block_size_;
  if (start < base_) start = base_;
  if (stop > end()) stop = end();
  return BlockRange{start, stop - start};
}

uint64_t Region::slot_bytes(size_t index) const noexcept {
  return tier::BuddyAllocator::rounded_size(block_range(index).length);
}

uint64_t Region::pool_bytes() const noexcept {
  if (block_count_ == 1) return slot_bytes(0);
  return slot_bytes(0) + slot_bytes(block_count_ - 1) + (block_count_ - 2) * block_size_;
}

}  // namespace emp::core
