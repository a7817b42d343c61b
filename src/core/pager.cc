#include "core/pager.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cstring>

#include "common/log.h"
#include "os/app_memory.h"
#include "os/page.h"
#include "os/page_drop.h"
#include "os/raw_syscalls.h"

namespace emp::core {

Result<Scratch> Scratch::create(tier::Pool& pool, size_t bytes) noexcept {
  // Not populated: its pages fault in (in the kernel) as I/O first uses them, so a forked
  // child that never evicts or fetches does not pay for megabytes of staging.
  auto staging = os::Mapping::anonymous(bytes, os::kPageSize, /*populate=*/false);
  if (!staging) return staging.status();
  Status status = pool.register_buffer(staging->data(), staging->size());
  if (!status) return status;
  Scratch scratch;
  scratch.staging = std::move(*staging);
  return scratch;
}

Pager::Pager(os::Userfaultfd& uffd, tier::Pool& pool, FrameBudget& budget, EngineCounters& counters,
             const Options& options, os::DropMethod drop_method)
    : uffd_(uffd), pool_(pool), budget_(budget), counters_(counters), csf_(options.csf), drop_method_(drop_method) {
  auto zeros = os::Mapping::anonymous(kMaxBlockSize);
  throw_if_error(zeros.status());
  zeros_ = std::move(*zeros);
  // For blocks the application made unreadable (mprotect); absent in some sandboxes.
  self_memory_ = UniqueFd(::open("/proc/self/mem", O_RDONLY | O_CLOEXEC));
}

Status Pager::wake(uintptr_t address) noexcept {
  return uffd_.wake(reinterpret_cast<void*>(os::page_floor(address)), os::kPageSize);
}

bool Pager::install(uintptr_t destination, const std::byte* source, size_t length, bool write_protect,
                    bool quiet) noexcept {
  size_t done = 0;
  while (done < length) {
    Status error;
    size_t copied = 0;
    auto outcome = uffd_.copy(reinterpret_cast<void*>(destination + done), source + done, length - done, write_protect,
                              /*wake=*/true, &error, &copied);
    if (outcome == os::CopyOutcome::kDone) return true;
    done += copied;
    if (outcome == os::CopyOutcome::kExists) {
      // Someone mapped this page (e.g. a kernel CoW): keep theirs, go on after it.
      (void)uffd_.wake(reinterpret_cast<void*>(destination + done), os::kPageSize);
      done += os::kPageSize;
      continue;
    }
    if (error) continue;  // EAGAIN (no error set): the address space changed under us; retry the rest
    if (error.code() == ENOENT) {
      // One copy must stay within one VMA, and the program may have split the block's
      // range into several (madvise or mprotect of single pages): copy the first page on
      // its own, then the rest again. A page that is not in a registered mapping at all
      // (unmapped behind our back) has nothing to receive the data: skip it.
      error = Status::ok();
      outcome = uffd_.copy(reinterpret_cast<void*>(destination + done), source + done, os::kPageSize, write_protect,
                           /*wake=*/true, &error, &copied);
      if (outcome == os::CopyOutcome::kExists) (void)uffd_.wake(reinterpret_cast<void*>(destination + done), os::kPageSize);
      if (outcome == os::CopyOutcome::kDone || outcome == os::CopyOutcome::kExists || error.code() == ENOENT) {
        done += os::kPageSize;
        continue;
      }
      if (error) continue;  // EAGAIN
    }
    if (quiet) return false;
    EMP_ERROR_LIMITED("pager", "%s at %#lx (+%zu bytes)", error.to_string().c_str(), destination + done, length - done);
    return false;
  }
  return true;
}

void Pager::fill_holes(const BlockRange& range, const unsigned char* present) noexcept {
  size_t pages = range.length / os::kPageSize;
  for (size_t p = 0; p < pages;) {
    if (present[p] & 1) {
      ++p;
      continue;
    }
    size_t q = p;
    while (q < pages && !(present[q] & 1)) ++q;
    (void)install(range.start + p * os::kPageSize, zeros_.data(), (q - p) * os::kPageSize, /*write_protect=*/false);
    p = q;
  }
}

bool Pager::read_subblocks(Region& region, size_t index, size_t first, size_t last, std::byte* staging,
                           Scratch& scratch) noexcept {
  BlockRange range = region.block_range(index);
  const tier::Slot slot = region.block(index).slot;
  uint64_t sub = region.subblock_size();
  size_t count = 0;
  for (size_t i = first; i < last && count < Scratch::kMaxSpans; ++i) {
    uint64_t offset = i * sub;
    uint64_t length = std::min<uint64_t>(sub, range.length - offset);
    scratch.spans[count++] = tier::SlotSpan{slot, offset, staging + offset, length};
  }
  return pool_.read_slots({scratch.spans, count}, [&](const tier::FailedBatch& failed) {
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    EMP_ERROR_LIMITED("pager", "reading block at %#lx from %s: %s", range.start, failed.tier_name.c_str(),
                      failed.status.to_string().c_str());
  });
}

bool Pager::fill(Region& region, size_t index, uint32_t word, uintptr_t fault_address, bool is_write, uint32_t epoch,
                 Scratch& scratch, FaultClock& clock) noexcept {
  BlockMeta& block = region.block(index);
  BlockRange range = region.block_range(index);
  const FillMode mode = is_write                          ? FillMode::kWritten
                        : BlockMeta::predicts_writes(word) ? FillMode::kPredicted
                                                           : FillMode::kProtected;
  const bool protect = mode == FillMode::kProtected;
  uint32_t frequency = BlockMeta::frequency_of(word);
  // Faults are counted before the install wakes the faulting thread (so a thread that
  // reads the counters after its own accesses sees them), and uncounted on failure.
  if (BlockMeta::is_empty(word)) {
    counters_.faults_zero.fetch_add(1, std::memory_order_relaxed);
    if (!install(range.start, zeros_.data(), range.length, protect)) {
      counters_.faults_zero.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
  } else {
    counters_.faults_fetch.fetch_add(1, std::memory_order_relaxed);
    auto failed = [&] {
      counters_.faults_fetch.fetch_sub(1, std::memory_order_relaxed);
      return false;
    };
    std::byte* staging = scratch.staging.data();
    uint64_t sub = region.subblock_size();
    size_t subblocks = (range.length + sub - 1) / sub;
    if (csf_ && subblocks > 1) {
      size_t critical = (fault_address - range.start) / sub;
      uint64_t offset = critical * sub;
      uint64_t length = std::min<uint64_t>(sub, range.length - offset);
      if (!read_subblocks(region, index, critical, critical + 1, staging, scratch)) return failed();
      clock.lap(FaultStage::kTierRead);
      if (!install(range.start + offset, staging + offset, length, protect)) return failed();
      clock.lap(FaultStage::kInstall);
      // The faulting thread runs again; the rest of the block follows.
      bool ok = read_subblocks(region, index, 0, critical, staging, scratch) &&
                read_subblocks(region, index, critical + 1, subblocks, staging, scratch) &&
                (offset == 0 || install(range.start, staging, offset, protect)) &&
                (offset + length == range.length ||
                 install(range.start + offset + length, staging + offset + length, range.length - offset - length, protect));
      if (!ok) {
        // The critical subblock is already mapped: drop it again so nothing stale stays.
        drop(region, range);
        return failed();
      }
    } else {
      if (!read_subblocks(region, index, 0, subblocks, staging, scratch)) return failed();
      clock.lap(FaultStage::kTierRead);
      if (!install(range.start, staging, range.length, protect)) return failed();
      clock.lap(FaultStage::kInstall);
    }
    // A refault within one sweep of the eviction: the block is hot.
    frequency = block.refault_frequency(word, epoch);
  }
  block.release(BlockMeta::to_resident(word, mode, frequency));
  return true;
}

size_t Pager::fill_ahead(Region& region, size_t first, size_t count, bool as_write, Scratch& scratch) noexcept {
  std::byte* staging = scratch.staging.data();
  const size_t capacity = scratch.staging.size();
  const uint64_t sub = region.subblock_size();
  uint32_t words[kMaxAhead];
  size_t taken = 0, spans = 0;
  uint64_t bytes = 0;
  count = std::min(count, kMaxAhead);
  for (; taken < count && first + taken < region.block_count(); ++taken) {
    size_t index = first + taken;
    BlockMeta& block = region.block(index);
    BlockRange range = region.block_range(index);
    size_t subblocks = (range.length + sub - 1) / sub;
    if (bytes + range.length > capacity || spans + subblocks > Scratch::kMaxSpans) break;
    uint32_t word;
    if (!block.try_acquire(&word)) break;
    if (BlockMeta::is_resident(word) || region.retired() || !budget_.try_charge(range.length)) {
      block.release(word);
      break;
    }
    words[taken] = word;
    if (BlockMeta::is_evicted(word)) {
      for (size_t i = 0; i < subblocks; ++i) {
        uint64_t offset = i * sub;
        uint64_t length = std::min<uint64_t>(sub, range.length - offset);
        scratch.spans[spans++] = tier::SlotSpan{block.slot, offset, staging + bytes + offset, length};
      }
    } else {
      std::memset(staging + bytes, 0, range.length);
    }
    bytes += range.length;
  }
  if (taken == 0) return 0;
  // One batch per tier, then one copy for the whole run.
  bool ok = pool_.read_slots({scratch.spans, spans}, [&](const tier::FailedBatch& failed) {
    counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
    EMP_ERROR_LIMITED("pager", "readahead from %s: %s", failed.tier_name.c_str(), failed.status.to_string().c_str());
  });
  if (ok) counters_.prefetched.fetch_add(taken, std::memory_order_relaxed);  // before the install: see fill()
  uintptr_t start = region.block_range(first).start;
  if (ok && !install(start, staging, bytes, /*write_protect=*/!as_write, /*quiet=*/true)) {
    drop(region, BlockRange{start, bytes});
    counters_.prefetched.fetch_sub(taken, std::memory_order_relaxed);
    ok = false;
  }
  for (size_t k = 0; k < taken; ++k) {
    BlockMeta& block = region.block(first + k);
    if (!ok) {
      budget_.uncharge(region.block_range(first + k).length);
      block.release(words[k]);
      continue;
    }
    // Cold until a fault proves otherwise: no heat, frequency kept.
    block.release(BlockMeta::to_prefetched(words[k], as_write));
  }
  if (!ok) return 0;
  return taken;
}

void Pager::make_dirty(Region& region, size_t index, uint32_t word, size_t run_after) noexcept {
  // The blocks after this one join while they are resident, clean and idle.
  uint32_t words[kMaxAhead];
  size_t joined = 0;
  for (run_after = std::min(run_after, kMaxAhead); joined < run_after; ++joined) {
    BlockMeta& next = region.block(index + 1 + joined);
    uint32_t seen;
    if (!next.try_acquire(&seen)) break;
    if (!BlockMeta::is_resident(seen) || BlockMeta::is_dirty(seen)) {
      next.release(seen);
      break;
    }
    words[joined] = seen;
  }
  BlockRange first = region.block_range(index), last = region.block_range(index + joined);
  Status status = uffd_.write_protect(first.pointer(), last.start + last.length - first.start, /*protect=*/false,
                                      /*wake=*/true);
  if (!status) EMP_ERROR_LIMITED("pager", "%s at %#lx", status.to_string().c_str(), first.start);
  counters_.faults_write_protect.fetch_add(1, std::memory_order_relaxed);
  for (size_t k = 0; k < joined; ++k) region.block(index + 1 + k).release(BlockMeta::mark_written(words[k]));
  region.block(index).release(BlockMeta::mark_written(word));
}

void Pager::drop(const Region& region, const BlockRange& range) noexcept {
  if (region.drop_pages(range.start, range.length) != 0)
    EMP_ERROR_LIMITED("pager", "dropping the pages at %#lx: %s", range.start, std::strerror(errno));
}

size_t Pager::freeze(std::span<Victim> victims, std::span<bool> written, Scratch& scratch,
                     std::span<size_t> members) noexcept {
  // Each write-protect call costs a TLB shootdown, which interrupts every CPU running a
  // thread of this process. Victims come in address order, so one call covers a run of
  // them when every block between two victims is safe to protect too: not resident (the
  // kernel skips empty page-table entries) or resident and clean (already protected). A
  // dirty or busy block between them ends the run; if one turns dirty meanwhile, its next write
  // takes a write-protect fault that unprotects it again (FaultHandler::on_write_protect).
  auto between_is_protectable = [](Region& region, size_t from, size_t to) {
    if (to <= from || to - from > kMaxRunGap) return false;
    for (size_t i = from + 1; i < to; ++i) {
      uint32_t word = region.block(i).load();
      if (BlockMeta::is_busy(word) || (BlockMeta::is_resident(word) && BlockMeta::is_dirty(word)))
        return false;  // dirty, or being filled (perhaps writable) right now
    }
    return true;
  };
  size_t kept = 0;
  for (size_t first = 0; first < members.size();) {
    Victim& head = victims[members[first]];
    size_t last = first;
    while (last + 1 < members.size()) {
      Victim& candidate = victims[members[last + 1]];
      if (candidate.region != head.region ||
          !between_is_protectable(*head.region, victims[members[last]].index, candidate.index))
        break;
      ++last;
    }
    uintptr_t start = head.region->block_range(head.index).start;
    BlockRange tail = head.region->block_range(victims[members[last]].index);
    Status status = uffd_.write_protect(reinterpret_cast<void*>(start), tail.start + tail.length - start,
                                        /*protect=*/true, /*wake=*/false);
    counters_.write_protect_calls.fetch_add(1, std::memory_order_relaxed);
    for (size_t k = first; k <= last; ++k) {
      if (!status) {
        EMP_ERROR_LIMITED("pager", "%s at %#lx", status.to_string().c_str(), start);
        written[members[k]] = false;
        continue;
      }
      scratch.spans[kept] = scratch.spans[k];
      members[kept++] = members[k];
    }
    first = last + 1;
  }
  return kept;
}

void Pager::write_back(std::span<Victim> victims, std::span<bool> written, Scratch& scratch,
                       EvictClock& clock) noexcept {
  // Chunk by chunk (as much as the staging memory holds): freeze the chunk's dirty blocks
  // (write-protect), copy them to staging, then write the chunk with one batch per tier.
  std::byte* staging = scratch.staging.data();
  const size_t capacity = scratch.staging.size();
  size_t members[Scratch::kMaxSpans];  // victim index of each staged block
  size_t next = 0;
  while (next < victims.size()) {
    // Freeze: give each block a slot and write-protect it; a racing writer now waits.
    size_t staged = 0, used = 0;
    for (; next < victims.size() && staged < Scratch::kMaxSpans; ++next) {
      if (!written[next]) continue;
      Victim& v = victims[next];
      BlockMeta& block = v.region->block(v.index);
      BlockRange range = v.region->block_range(v.index);
      if (used + range.length > capacity) break;
      if (BlockMeta::has_shared_slot(v.word)) {
        // A forked child may still read the old copy: write this one elsewhere.
        pool_.release_shared(block.slot, v.region->slot_bytes(v.index));
        block.slot = tier::Slot{};
        v.word = BlockMeta::clear_shared_slot(v.word);
      }
      if (!block.slot.valid()) {
        auto slot = pool_.allocate(v.region->slot_bytes(v.index));
        if (!slot) {
          EMP_ERROR_LIMITED("pager", "no second-tier space for block at %#lx: %s", range.start,
                            slot.status().to_string().c_str());
          written[next] = false;
          continue;
        }
        block.slot = *slot;
      }
      scratch.spans[staged] = tier::SlotSpan{block.slot, 0, staging + used, range.length};
      members[staged++] = next;
      used += range.length;
    }
    staged = freeze(victims, written, scratch, {members, staged});
    clock.lap(EvictStage::kWriteProtect);
    // Copy the frozen blocks out.
    size_t kept = 0;
    for (size_t k = 0; k < staged; ++k) {
      Victim& v = victims[members[k]];
      BlockRange range = v.region->block_range(v.index);
      if (!v.region->may_be_unreadable()) {
        os::copy_from_frozen_app_memory(scratch.spans[k].buffer, range.pointer(), range.length);
      } else if (!os::copy_from_frozen_app_memory_forced(self_memory_.get(), scratch.spans[k].buffer, range.pointer(),
                                                         range.length)) {
        EMP_ERROR_LIMITED("pager", "reading protected block at %#lx through /proc/self/mem: %s", range.start,
                          std::strerror(errno));
        (void)uffd_.write_protect(range.pointer(), range.length, /*protect=*/false, /*wake=*/true);
        written[members[k]] = false;
        continue;
      }
      scratch.spans[kept] = scratch.spans[k];
      members[kept++] = members[k];
    }
    staged = kept;
    clock.lap(EvictStage::kCopy);
    // One write batch per tier among the staged blocks.
    (void)pool_.write_slots({scratch.spans, staged}, [&](const tier::FailedBatch& failed) {
      counters_.io_errors.fetch_add(1, std::memory_order_relaxed);
      EMP_ERROR_LIMITED("pager", "writing %zu block(s) to %s: %s", failed.entries.size(), failed.tier_name.c_str(),
                        failed.status.to_string().c_str());
      for (size_t position : failed.entries) written[members[position]] = false;
    });
    clock.lap(EvictStage::kWriteBack);
  }
}

uint64_t Pager::evict(std::span<Victim> victims, uint32_t epoch, Scratch& scratch, EvictClock& clock) noexcept {
  constexpr size_t kMaxBatch = 256;
  bool dirty[kMaxBatch];
  if (victims.size() > kMaxBatch) victims = victims.first(kMaxBatch);
  bool any_dirty = false;
  for (size_t i = 0; i < victims.size(); ++i) {
    dirty[i] = BlockMeta::is_dirty(victims[i].word);
    any_dirty |= dirty[i];
  }
  bool written[kMaxBatch];
  std::memcpy(written, dirty, victims.size());
  if (any_dirty) write_back(victims, {written, victims.size()}, scratch, clock);

  // Drop every evicted block's pages with one call (one TLB shootdown) before any of
  // them is released: a fill may start on a block only after its old pages are gone.
  uint32_t next_words[kMaxBatch];
  os::PageDropBatch drops(drop_method_, MADV_DONTNEED);
  uint64_t evicted = 0;
  for (size_t i = 0; i < victims.size(); ++i) {
    Victim& v = victims[i];
    BlockRange range = v.region->block_range(v.index);
    if (dirty[i] && !written[i]) {
      // Write-back failed: keep the block resident and writable, and hot so the next
      // sweeps try other blocks first.
      (void)uffd_.write_protect(range.pointer(), range.length, /*protect=*/false, /*wake=*/true);
      next_words[i] = BlockMeta::with_heat(v.word, BlockMeta::kMaxHeat);
      continue;
    }
    if (v.region->shared_memory()) drop(*v.region, range);
    else drops.add(range.start, range.length);
    if (dirty[i]) {
      counters_.evictions_dirty.fetch_add(1, std::memory_order_relaxed);
    } else {
      counters_.evictions_clean.fetch_add(1, std::memory_order_relaxed);
    }
    next_words[i] = BlockMeta::to_evicted(v.word);  // Evicted if the slot holds the data, else Empty
    v.region->block(v.index).evicted_epoch = epoch;
    budget_.uncharge(range.length);
    evicted += range.length;
  }
  if (drops.flush() != 0) EMP_ERROR_LIMITED("pager", "dropping evicted pages: %s", std::strerror(errno));
  counters_.drop_calls.fetch_add(drops.calls(), std::memory_order_relaxed);
  clock.lap(EvictStage::kUnmap);
  for (size_t i = 0; i < victims.size(); ++i) victims[i].region->block(victims[i].index).release(next_words[i]);
  return evicted;
}

}  // namespace emp::core
