// Engine range operations for libemp.so: munmap of part of a region (split), madvise
// discards, mprotect without read access, and the forked child's view of what is absent.
// Each runs under maintenance_mutex_ and holds the busy bit of every block it changes,
// so fills and evictions in flight finish first and later ones see the new state.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "core/engine.h"
#include "os/page.h"
#include "os/raw_syscalls.h"

namespace emp::core {
namespace {

bool within(const BlockRange& range, uintptr_t start, uintptr_t end) {
  return range.start >= start && range.start + range.length <= end;
}

}  // namespace

bool Engine::overlaps(const void* start, size_t length) const noexcept {
  uintptr_t s = reinterpret_cast<uintptr_t>(start);
  try {
    return !regions_.overlapping(s, s + length).empty();
  } catch (...) {
    return true;  // cannot tell: take the careful path
  }
}

bool Engine::is_region_start(const void* address) const noexcept {
  uintptr_t at = reinterpret_cast<uintptr_t>(address);
  std::shared_ptr<Region> region = regions_.find(at);
  return region && region->base() == at;
}

void Engine::for_each_unmanaged_part(const void* start, size_t length, void (*visit)(void*, size_t, void*),
                                     void* context) const noexcept {
  uintptr_t at = reinterpret_cast<uintptr_t>(start), end = at + length;
  try {
    for (const auto& region : regions_.overlapping(at, end)) {
      if (region->base() > at) visit(reinterpret_cast<void*>(at), region->base() - at, context);
      at = std::max(at, region->end());
    }
  } catch (...) {
    return;
  }
  if (at < end) visit(reinterpret_cast<void*>(at), end - at, context);
}

Scratch* Engine::maintenance_scratch() noexcept {
  if (!maintenance_scratch_) {
    auto scratch = Scratch::create(*pool_, options_.block_size);
    if (!scratch) {
      EMP_ERROR_LIMITED("engine", "staging memory for a range operation: %s", scratch.status().to_string().c_str());
      return nullptr;
    }
    maintenance_scratch_ = std::make_unique<Scratch>(std::move(*scratch));
  }
  return maintenance_scratch_.get();
}

// The caller holds block `index` busy (`*word` as seen). An evicted block is read back
// so its bytes are in memory; on return the block is held again. False on a tier error.
bool Engine::bring_in(Region& region, size_t index, uint32_t* word) noexcept {
  for (int attempt = 0; attempt < 8 && BlockMeta::is_evicted(*word); ++attempt) {
    Scratch* scratch = maintenance_scratch();
    if (!scratch) return false;
    BlockRange range = region.block_range(index);
    budget_.force_charge(range.length);
    evictor_.kick();
    FaultClock untimed;
    if (!pager_.fill(region, index, *word, range.start, /*is_write=*/true, clock_.epoch(), *scratch, untimed)) {
      budget_.uncharge(range.length);
      return false;
    }
    // fill() published the block; take it back (the evictor may have won meanwhile).
    *word = region.block(index).acquire();
  }
  return !BlockMeta::is_evicted(*word);
}

// A held block gives up its tier slot (later, if a forked child may still read it).
void Engine::free_slot(Region& region, size_t index, uint32_t* word) noexcept {
  BlockMeta& block = region.block(index);
  if (block.slot.valid()) {
    if (BlockMeta::has_shared_slot(*word)) {
      pool_->release_shared(block.slot, region.slot_bytes(index));
    } else {
      pool_->release(block.slot, region.slot_bytes(index));
    }
  }
  block.slot = tier::Slot{};
  *word = BlockMeta::without_slot(*word);
}

// A held block whose memory is about to be the only copy: free its tier slot.
void Engine::drop_copy(Region& region, size_t index, uint32_t* word) noexcept {
  free_slot(region, index, word);
  if (BlockMeta::is_resident(*word)) *word = BlockMeta::mark_dirty(*word);
}

// Under the maintenance mutex, calls `change(region, cut_start, cut_end)` for each region
// that [start, start+length) overlaps, with the range clipped to it.
template <typename Change>
Status Engine::for_each_cut(void* start, size_t length, Change&& change) noexcept {
  uintptr_t s = reinterpret_cast<uintptr_t>(start), e = s + length;
  try {
    std::lock_guard lock(maintenance_mutex_);
    Status result = Status::ok();
    for (const auto& region : regions_.overlapping(s, e)) {
      Status status = change(region, std::max(s, region->base()), std::min(e, region->end()));
      if (!status) result = status;
    }
    return result;
  } catch (const std::exception&) {
    return Status::error(ENOMEM, "range bookkeeping");
  }
}

Status Engine::forget_range(void* start, size_t length) noexcept {
  return for_each_cut(start, length, [&](const std::shared_ptr<Region>& region, uintptr_t cut_start, uintptr_t cut_end) {
    return cut_start == region->base() && cut_end == region->end()
               ? release_locked(reinterpret_cast<void*>(region->base()))
               : split_out(region, cut_start, cut_end);
  });
}

std::vector<std::shared_ptr<Region>> Engine::pieces_outside(const Region& region, uintptr_t cut_start,
                                                            uintptr_t cut_end) {
  std::vector<std::shared_ptr<Region>> pieces;
  if (cut_start > region.base())
    pieces.push_back(std::make_shared<Region>(region.base(), cut_start - region.base(), region.block_size(),
                                              region.subblock_size(), region.owns_memory()));
  if (cut_end < region.end())
    pieces.push_back(std::make_shared<Region>(cut_end, region.end() - cut_end, region.block_size(),
                                              region.subblock_size(), region.owns_memory()));
  return pieces;
}

void Engine::hand_over_reservation(const Region& region, const std::vector<std::shared_ptr<Region>>& pieces,
                                   const char* after) noexcept {
  pool_->unreserve(region.reserved_pool_bytes());
  for (const auto& piece : pieces) {
    if (!region.reserved_pool_bytes()) piece->set_unreserved();
    if (Status status = pool_->reserve(piece->reserved_pool_bytes()); !status)
      EMP_WARN("engine", "after %s: %s (the pool is over-committed)", after, status.to_string().c_str());
  }
}

Status Engine::split_out(const std::shared_ptr<Region>& region, uintptr_t cut_start, uintptr_t cut_end) {
  // The pieces first: building them may throw, and nothing has changed yet.
  std::vector<std::shared_ptr<Region>> pieces = pieces_outside(*region, cut_start, cut_end);
  std::vector<uint32_t> words(region->block_count());
  for (size_t i = 0; i < words.size(); ++i) words[i] = region->block(i).acquire();
  auto release_all = [&] {
    for (size_t i = 0; i < words.size(); ++i) region->block(i).release(words[i]);
  };

  // A block the cut goes through keeps some bytes on either side: bring it in, since its
  // tier copy is laid out for the whole block.
  size_t first_cut = region->block_index(cut_start), last_cut = region->block_index(cut_end - 1);
  for (size_t k : {first_cut, last_cut}) {
    if (within(region->block_range(k), cut_start, cut_end) || BlockMeta::is_empty(words[k]))
      continue;
    if (!bring_in(*region, k, &words[k])) {
      release_all();
      return Status::error(EIO, "cannot read back a block cut by munmap");
    }
    drop_copy(*region, k, &words[k]);
  }
  // Blocks wholly inside the cut give back their DRAM charge and tier space.
  for (size_t k = first_cut; k <= last_cut; ++k) {
    BlockRange range = region->block_range(k);
    if (BlockMeta::is_resident(words[k])) budget_.uncharge(range.length);
    if (within(range, cut_start, cut_end)) free_slot(*region, k, &words[k]);
  }
  // The pieces inherit every other block's state; cut blocks are charged for what stays.
  for (const auto& piece : pieces) {
    if (region->may_be_unreadable()) piece->mark_may_be_unreadable();
    if (region->shared_memory()) piece->set_shared_memory();
    for (size_t j = 0; j < piece->block_count(); ++j) {
      BlockRange range = piece->block_range(j);
      size_t old = region->block_index(range.start);
      BlockMeta& block = piece->block(j);
      (void)block.acquire();
      block.slot = region->block(old).slot;
      block.evicted_epoch = region->block(old).evicted_epoch;
      bool cut = old >= first_cut && old <= last_cut;
      if (cut && BlockMeta::is_resident(words[old])) budget_.force_charge(range.length);
      block.release(words[old]);
    }
  }
  if (region->deferred()) {
    // Charged at its length and never registered: the pieces are deferred too.
    uint64_t kept = 0;
    for (const auto& piece : pieces) {
      piece->set_deferred();
      kept += piece->length();
    }
    budget_.uncharge(region->length() - kept);
    deferred_bytes_.fetch_sub(region->length() - kept, std::memory_order_relaxed);
  }
  hand_over_reservation(*region, pieces, "a partial munmap");
  region->disown();  // the pieces own (or not) the memory that is left
  regions_.replace(region, pieces);
  region->retire();
  for (size_t i = 0; i < words.size(); ++i) region->block(i).slot = tier::Slot{};
  release_all();  // waiters see the retired region and fault again into the pieces
  return Status::ok();
}

Status Engine::discard_range(void* start, size_t length) noexcept {
  return for_each_cut(start, length, [&](const std::shared_ptr<Region>& region, uintptr_t cut_start, uintptr_t cut_end) {
    Status result = Status::ok();
    if (region->deferred() && discard_deferred(*region, cut_start, cut_end)) return result;
    for (size_t k = region->block_index(cut_start); k <= region->block_index(cut_end - 1); ++k) {
      BlockMeta& block = region->block(k);
      BlockRange range = region->block_range(k);
      uint32_t word = block.acquire();
      if (within(range, cut_start, cut_end)) {
        // The whole block: back to never-touched.
        if (BlockMeta::is_resident(word)) {
          budget_.uncharge(range.length);
          (void)region->drop_pages(range.start, range.length);
        }
        free_slot(*region, k, &word);
        block.release(BlockMeta::to_empty());
        continue;
      }
      if (BlockMeta::is_empty(word)) {
        block.release(word);
        continue;
      }
      // Part of a block: bring it in, zero that part, keep the block as dirty memory.
      if (!bring_in(*region, k, &word)) {
        block.release(word);
        result = Status::error(EIO, "cannot read back a block partly discarded by madvise");
        continue;
      }
      uintptr_t zero_start = std::max(cut_start, range.start);
      uintptr_t zero_end = std::min(cut_end, range.start + range.length);
      (void)region->drop_pages(zero_start, zero_end - zero_start);
      Status error;
      (void)uffd_.zeropage(reinterpret_cast<void*>(zero_start), zero_end - zero_start, /*wake=*/true, &error);
      drop_copy(*region, k, &word);
      block.release(word);
    }
    return result;
  });
}

// A discard in a deferred region is the kernel's: drop the pages (holding the blocks, so
// a take-over sees either all of them or none gone). False when the region was taken
// over first (the caller discards block by block).
bool Engine::discard_deferred(Region& region, uintptr_t cut_start, uintptr_t cut_end) noexcept {
  size_t first = region.block_index(cut_start), last = region.block_index(cut_end - 1);
  for (size_t k = first; k <= last; ++k) (void)region.block(k).acquire();
  bool deferred = region.deferred();
  if (deferred) (void)region.drop_pages(cut_start, cut_end - cut_start);
  for (size_t k = first; k <= last; ++k) region.block(k).release(region.block(k).load());
  return deferred;
}

void Engine::note_unreadable(const void* start, size_t length) noexcept {
  uintptr_t s = reinterpret_cast<uintptr_t>(start);
  try {
    for (const auto& region : regions_.overlapping(s, s + length)) region->mark_may_be_unreadable();
  } catch (...) {
  }
}

void Engine::for_each_absent_range(void (*visit)(uintptr_t, size_t, void*), void* context) const noexcept {
  // Evicted blocks, and blocks a fill or an eviction was working on at fork time (their
  // busy bit is still set in this copy): the pages not mapped here are absent. A block
  // being filled from Empty is not: its missing pages read zeros, which is right.
  uintptr_t run_start = 0, run_end = 0;
  auto add_page = [&](uintptr_t page) {
    if (page == run_end) {
      run_end += os::kPageSize;
      return;
    }
    if (run_end > run_start) visit(run_start, run_end - run_start, context);
    run_start = page;
    run_end = page + os::kPageSize;
  };
  unsigned char present[kMaxBlockSize / os::kPageSize];
  RegionTable::Snapshot regions = regions_.snapshot();  // held for the whole loop
  for (const auto& region : *regions) {
    for (size_t k = 0; k < region->block_count(); ++k) {
      uint32_t word = region->block(k).load();
      if (!BlockMeta::is_evicted(word) && !(BlockMeta::is_busy(word) && !BlockMeta::is_empty(word))) continue;
      BlockRange range = region->block_range(k);
      size_t pages = range.length / os::kPageSize;
      if (::mincore(range.pointer(), range.length, present) != 0) std::fill(present, present + pages, 0);
      for (size_t p = 0; p < pages; ++p)
        if (!(present[p] & 1)) add_page(range.start + p * os::kPageSize);
    }
  }
  if (run_end > run_start) visit(run_start, run_end - run_start, context);
}

}  // namespace emp::core
