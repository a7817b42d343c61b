// Engine across fork(): park the engine threads while the kernel copies the process, share the
// slots that exist at that moment with the child, and in the child start a new engine
// on the inherited regions (see tier/fork_watch.h for the child's second tier).
#include "common/log.h"
#include "core/engine.h"

namespace emp::core {

uint64_t Engine::fork_copy_bytes() const noexcept {
  uint64_t bytes = 0;
  auto regions = regions_.snapshot();
  for (const auto& region : *regions) {
    if (region->shared_memory()) continue;
    if (region->reserved_pool_bytes()) {
      bytes += region->reserved_pool_bytes();
      continue;
    }
    for (size_t k = 0; k < region->block_count(); ++k)
      if (!BlockMeta::is_empty(region->block(k).load())) bytes += region->block_range(k).length;
  }
  return bytes;
}

void Engine::hold_for_fork() noexcept {
  maintenance_mutex_.lock();  // no range operation, map or release
  fork_snapshot_ = regions_.snapshot();
  // Every engine thread parked between batches: no fill, eviction or take-over is in
  // flight, so no block is busy or half-changed when the kernel copies the process. The
  // fault threads first: one may be waiting for the evictor to make room.
  faults_.pause();
  evictor_.pause();
}

void Engine::release_after_fork_in_parent() noexcept {
  // The slots that exist now may be read by the child: never rewrite or free them.
  for (const auto& region : *fork_snapshot_) {
    for (size_t k = 0; k < region->block_count(); ++k) {
      BlockMeta& block = region->block(k);
      uint32_t word = block.load();
      if (block.slot.valid() && !BlockMeta::has_shared_slot(word))
        block.store_unowned(BlockMeta::with_shared_slot(word));
    }
  }
  fork_snapshot_.reset();
  evictor_.resume();
  faults_.resume();
  maintenance_mutex_.unlock();
}

std::unique_ptr<Engine> Engine::continue_in_child(std::unique_ptr<tier::Pool> pool) {
  EngineConfig config;
  config.options = options_;
  config.options.print_stats = false;  // the parent prints its own
  config.budget_bytes = budget_.budget();
  config.pool = std::move(pool);
  config.uffd = uffd_options_;
  config.drop_method = pager_.drop_method();  // the same kernel: no second probe per fork
  os::Userfaultfd uffd = os::Userfaultfd::open(config.uffd);
  std::unique_ptr<Engine> child(new Engine(std::move(config), std::move(uffd)));
  // Fault threads first: once a range is registered, anything that touches it (glibc
  // does, in pthread_create, when it reuses the stack of a thread the child does not
  // have and clears that thread's TLS bookkeeping on the program's heap) needs a thread
  // to serve the fault. A region is in the table before it is registered.
  child->faults_.start(child->options_.fault_threads);
  uint64_t resident = 0;
  for (const auto& region : *fork_snapshot_) {
    for (size_t k = 0; k < region->block_count(); ++k) {
      BlockMeta& block = region->block(k);
      // fork() dropped the write-protection of our pages: resident blocks count as written.
      uint32_t word = BlockMeta::in_forked_child(block.load());
      // Slots from before the fork belong to the parent: read them, never write them.
      if (block.slot.valid()) word = BlockMeta::with_shared_slot(word);
      if (BlockMeta::is_resident(word)) resident += region->block_range(k).length;
      // Written only when it changes: an untouched table page stays shared with the parent.
      if (word != block.load()) block.store_unowned(word);
    }
    child->regions_.insert(region);
    if (region->deferred()) {
      // The kernel copied its pages; it stays the kernel's, charged at its length.
      resident += region->length();
      child->deferred_bytes_.fetch_add(region->length(), std::memory_order_relaxed);
    } else {
      throw_if_error(child->uffd_.register_range(reinterpret_cast<void*>(region->base()), region->length()));
    }
    if (Status status = child->pool_->reserve(region->reserved_pool_bytes()); !status)
      EMP_WARN("engine", "forked child: %s", status.to_string().c_str());
  }
  child->budget_.force_charge(resident);
  child->evictor_.start();
  EMP_INFO("engine", "forked child continues with its own engine: %s resident, %zu regions",
           std::to_string(resident).c_str(), fork_snapshot_->size());
  return child;
}

}  // namespace emp::core
