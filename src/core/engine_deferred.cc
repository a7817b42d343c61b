// Deferred regions (core/region.h): an application mapping that fits in the free budget
// is served by the kernel at kernel speed, charged at its full length, until the budget
// needs room. Then the evictor has the engine take it over here: register it with
// userfaultfd, ask the kernel (mincore) which pages it populated, and make each block
// holding any of them a resident block like any other (dirty, as memory holds its only
// copy; cold, so the CLOCK looks at it first). The region's charge becomes those blocks.
//
// A take-over holds every block of the region for the whole change, as a range
// operation (engine_ranges.cc) does, and never waits for one (fork parks the threads that
// take over, engine_fork.cc):
// it takes the busy bits with try_acquire and leaves a region it cannot have wholly for
// the evictor's next batch. Faults on the region (possible from the moment it is
// registered) wait on the busy bits, then find the blocks resident or Empty.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "core/engine.h"
#include "os/page.h"
#include "os/raw_syscalls.h"

namespace emp::core {

void Engine::take_over_deferred() noexcept {
  if (deferred_bytes_.load(std::memory_order_relaxed) == 0) return;
  RegionTable::Snapshot regions = regions_.snapshot();
  for (const auto& region : *regions)
    if (region->deferred()) (void)take_over(*region);
}

bool Engine::take_over(Region& region) noexcept {
  size_t count = region.block_count(), held = 0;
  uint32_t seen;
  while (held < count && region.block(held).try_acquire(&seen)) ++held;
  auto release_held = [&] {
    for (size_t k = 0; k < held; ++k) region.block(k).release(region.block(k).load());
  };
  // Retired: a munmap is removing it (release_locked retires it before it waits for the
  // blocks, and handles a deferred region itself).
  if (held < count || region.retired() || !region.deferred()) {
    release_held();
    return false;
  }
  void* base = reinterpret_cast<void*>(region.base());
  os::raw_madvise(base, region.length(), MADV_NOHUGEPAGE);
  if (Status status = uffd_.register_range(base, region.length()); !status) {
    EMP_ERROR_LIMITED("engine", "taking over %zu bytes at %p: %s (the kernel keeps serving them, over the budget)",
                      region.length(), base, status.to_string().c_str());
    release_held();
    return false;
  }
  // From here a touch of an absent page faults to EMP (and waits for the busy bits), so
  // mincore's answer stays true until the blocks are released.
  uint64_t resident = 0;
  unsigned char present[kMaxBlockSize / os::kPageSize];
  for (size_t k = 0; k < count; ++k) {
    BlockRange range = region.block_range(k);
    size_t pages = range.length / os::kPageSize;
    // A failure leaves the block Empty: a later fault fills around whatever the kernel
    // has there (a fill never overwrites a present page), so nothing is lost.
    if (::mincore(range.pointer(), range.length, present) != 0) continue;
    bool any = false;
    for (size_t p = 0; p < pages && !any; ++p) any = present[p] & 1;
    if (!any) continue;
    pager_.fill_holes(range, present);
    // Still held (the transition keeps the busy bit); published by release_held().
    region.block(k).store_unowned(BlockMeta::to_taken_over(region.block(k).load()));
    resident += range.length;
  }
  budget_.recharge(region.length(), resident);
  deferred_bytes_.fetch_sub(region.length(), std::memory_order_relaxed);
  region.end_deferral();
  counters_.takeovers.fetch_add(1, std::memory_order_relaxed);
  release_held();
  return true;
}

std::optional<Result<void*>> Engine::remap_deferred(void* old_address, size_t old_size, size_t new_size, int flags,
                                                    void* new_address) noexcept {
  uintptr_t old_start = reinterpret_cast<uintptr_t>(old_address), old_end = old_start + old_size;
  try {
    std::lock_guard lock(maintenance_mutex_);
    auto found = regions_.overlapping(old_start, old_end);
    if (found.size() != 1) return std::nullopt;
    std::shared_ptr<Region> region = found.front();
    if (!region->deferred() || old_start < region->base() || old_end > region->end()) return std::nullopt;
    uint64_t growth = new_size > old_size ? new_size - old_size : 0;
    if (growth && !budget_.try_charge_below(growth, budget_.low_watermark(evictor_.min_headroom()))) return std::nullopt;
    // Built before anything changes (they may throw): the parts of the region that stay.
    std::vector<std::shared_ptr<Region>> pieces = pieces_outside(*region, old_start, old_end);
    for (size_t k = 0; k < region->block_count(); ++k) (void)region->block(k).acquire();
    auto release_all = [&] {
      for (size_t k = 0; k < region->block_count(); ++k) region->block(k).release(region->block(k).load());
    };
    if (!region->deferred()) {  // taken over meanwhile
      release_all();
      if (growth) budget_.uncharge(growth);
      return std::nullopt;
    }
    long moved = ::syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
    if (moved == -1) {
      int error = errno;
      release_all();
      if (growth) budget_.uncharge(growth);
      return Result<void*>(Status::error(error, "mremap"));
    }
    uintptr_t new_start = static_cast<uintptr_t>(moved);
    auto moved_region = std::make_shared<Region>(new_start, new_size, region->block_size(), region->subblock_size(),
                                                 region->owns_memory());
    for (const auto& piece : pieces) piece->set_deferred();
    moved_region->set_deferred();
    if (region->may_be_unreadable()) {
      for (const auto& piece : pieces) piece->mark_may_be_unreadable();
      moved_region->mark_may_be_unreadable();
    }
    pieces.push_back(moved_region);
    hand_over_reservation(*region, pieces, "mremap");
    if (new_size < old_size) budget_.uncharge(old_size - new_size);
    deferred_bytes_.fetch_add(new_size, std::memory_order_relaxed);
    deferred_bytes_.fetch_sub(old_size, std::memory_order_relaxed);
    region->disown();
    regions_.replace(region, pieces);
    region->retire();
    release_all();
    return Result<void*>(reinterpret_cast<void*>(new_start));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace emp::core
