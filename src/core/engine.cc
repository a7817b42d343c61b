#include "core/engine.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "common/log.h"
#include "common/size_parse.h"
#include "os/page.h"
#include "os/raw_syscalls.h"

namespace emp::core {
namespace {

void default_fatal(const char* message) {
  EMP_ERROR("engine", "fatal: %s", message);
  std::abort();
}

}  // namespace

std::unique_ptr<Engine> Engine::create(EngineConfig config) {
  config.options.validate();
  if (!config.pool) throw std::invalid_argument("EMP needs a second tier (a file, device or donor in the memory path)");
  uint64_t block = config.options.block_size;
  uint64_t minimum = 4 * block;
  if (config.budget_bytes < minimum)
    throw std::invalid_argument("local DRAM budget " + format_size(config.budget_bytes) + " is below the minimum of " +
                                format_size(minimum) + " (4 blocks of " + format_size(block) + ")");
  os::Userfaultfd uffd = os::Userfaultfd::open(config.uffd);
  if (!uffd.write_protect_enabled())
    throw std::system_error(ENOTSUP, std::generic_category(),
                            "this kernel lacks userfaultfd write-protect for anonymous memory (Linux >= 5.7 needed): "
                            "EMP cannot track dirty blocks safely");
  std::unique_ptr<Engine> engine(new Engine(std::move(config), std::move(uffd)));
  engine->evictor_.start();
  engine->faults_.start(engine->options_.fault_threads);
  EMP_INFO("engine", "%s", engine->describe().c_str());
  return engine;
}

Engine::Engine(EngineConfig config, os::Userfaultfd uffd)
    : options_(config.options),
      uffd_(std::move(uffd)),
      pool_(std::move(config.pool)),
      budget_(config.budget_bytes, uint64_t{config.options.fault_threads} * config.options.block_size),
      clock_(regions_),
      pager_(uffd_, *pool_, budget_, counters_, options_, config.drop_method.value_or(os::probe_drop_method())),
      evictor_(clock_, pager_, budget_, counters_, *pool_, options_.block_size),
      faults_(uffd_, regions_, pager_, evictor_, clock_, budget_, counters_, *pool_, options_,
              config.fatal ? std::move(config.fatal) : FatalHandler(default_fatal)),
      uffd_options_(config.uffd) {
  evictor_.set_take_over([this] { take_over_deferred(); });
}

Engine::~Engine() {
  if (options_.print_stats) {
    std::string text = "EMP statistics\n" + stats().to_text();
    ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
    (void)ignored;
  }
  evictor_.stop();
  faults_.stop();
  // The version is held in a variable: a range-for over `*snapshot()` would free it as
  // soon as release() publishes the next one.
  RegionTable::Snapshot regions = regions_.snapshot();
  for (const auto& region : *regions) (void)release(reinterpret_cast<void*>(region->base()));
}

Result<void*> Engine::map(size_t length) noexcept {
  if (length == 0) return Status::error(EINVAL, "map of zero bytes");
  length = os::page_ceil(length);
  auto mapping = os::Mapping::anonymous(length, options_.block_size);
  if (!mapping) return mapping.status();
  uintptr_t base = mapping->address();
  Status status = add_region(base, length, {.owns_memory = true});
  if (!status) return status;
  mapping->release();  // the region owns it now
  return reinterpret_cast<void*>(base);
}

Status Engine::adopt(void* address, size_t length, bool reserve_pool, bool may_defer) noexcept {
  uintptr_t base = reinterpret_cast<uintptr_t>(address);
  if (base % os::kPageSize || length == 0 || length % os::kPageSize) return Status::error(EINVAL, "adopt: range not page aligned");
  return add_region(base, length, {.reserve_pool = reserve_pool, .may_defer = may_defer && options_.defer});
}

Status Engine::adopt_shared(void* address, size_t length, bool reserve_pool) noexcept {
  uintptr_t base = reinterpret_cast<uintptr_t>(address);
  if (base % os::kPageSize || length == 0 || length % os::kPageSize) return Status::error(EINVAL, "adopt: range not page aligned");
  if (!uffd_.shared_memory_enabled())
    return Status::error(ENOTSUP, "this kernel's userfaultfd cannot manage shared memory (needs MISSING_SHMEM and, "
                                  "for write-protect, WP_HUGETLBFS_SHMEM: Linux >= 5.19)");
  return add_region(base, length, {.reserve_pool = reserve_pool, .shared_memory = true});
}

Status Engine::add_region(uintptr_t base, size_t length, RegionKind kind) noexcept {
  std::lock_guard lock(maintenance_mutex_);
  std::shared_ptr<Region> region;
  try {
    region = std::make_shared<Region>(base, length, options_.block_size, options_.subblock_size, kind.owns_memory);
    if (!kind.reserve_pool) region->set_unreserved();
    if (kind.shared_memory) region->set_shared_memory();
  } catch (const std::exception&) {
    return Status::error(ENOMEM, "block table");
  }
  // Deferred while the whole region fits in the budget below the evictor's headroom.
  bool deferred = kind.may_defer && !kind.shared_memory &&
                  budget_.try_charge_below(length, budget_.low_watermark(evictor_.min_headroom()));
  // Until the region is in the table the caller still owns the memory.
  auto fail = [&](Status status, bool reserved, bool registered) {
    region->disown();
    if (registered) (void)uffd_.unregister_range(reinterpret_cast<void*>(base), length);
    if (reserved) pool_->unreserve(region->reserved_pool_bytes());
    if (deferred) budget_.uncharge(length);
    return status;
  };
  Status status = pool_->reserve(region->reserved_pool_bytes());
  if (!status) return fail(status, false, false);
  if (deferred) {
    region->set_deferred();
  } else {
    os::raw_madvise(reinterpret_cast<void*>(base), length, MADV_NOHUGEPAGE);
    status = uffd_.register_range(reinterpret_cast<void*>(base), length);
    if (!status) return fail(status, true, false);
  }
  try {
    regions_.insert(region);
  } catch (const std::exception&) {
    return fail(Status::error(EEXIST, "range overlaps an EMP-managed region"), true, !deferred);
  }
  if (deferred) deferred_bytes_.fetch_add(length, std::memory_order_relaxed);
  return Status::ok();
}

Status Engine::release(void* address) noexcept {
  std::lock_guard lock(maintenance_mutex_);
  return release_locked(address);
}

Status Engine::release_locked(void* address) noexcept {
  std::shared_ptr<Region> region = regions_.remove(reinterpret_cast<uintptr_t>(address));
  if (!region) return Status::error(EINVAL, "release: not the start of an EMP-managed region");
  region->retire();
  for (size_t i = 0; i < region->block_count(); ++i) {
    BlockMeta& block = region->block(i);
    uint32_t word = block.acquire();
    if (BlockMeta::state_of(word) == BlockState::kResident) budget_.uncharge(region->block_range(i).length);
    free_slot(*region, i, &word);
    block.release(0);
  }
  // A deferred region (never taken over: take_over skips retired regions) was charged at
  // its length and never registered.
  if (region->deferred()) {
    budget_.uncharge(region->length());
    deferred_bytes_.fetch_sub(region->length(), std::memory_order_relaxed);
  } else {
    (void)uffd_.unregister_range(reinterpret_cast<void*>(region->base()), region->length());
  }
  pool_->unreserve(region->reserved_pool_bytes());
  if (!region->owns_memory())
    os::raw_madvise(reinterpret_cast<void*>(region->base()), region->length(), MADV_DONTNEED);
  return Status::ok();
}

void Engine::set_budget(uint64_t bytes) noexcept {
  uint64_t minimum = 4 * options_.block_size;
  budget_.set_budget(bytes < minimum ? minimum : bytes);
  evictor_.kick();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.faults_zero = counters_.faults_zero.load();
  s.faults_fetch = counters_.faults_fetch.load();
  s.faults_write_protect = counters_.faults_write_protect.load();
  s.faults_local = counters_.faults_local.load();
  s.prefetched = counters_.prefetched.load();
  s.evictions_clean = counters_.evictions_clean.load();
  s.evictions_dirty = counters_.evictions_dirty.load();
  s.evictions_direct = counters_.evictions_direct.load();
  s.io_errors = counters_.io_errors.load();
  s.write_protect_calls = counters_.write_protect_calls.load();
  s.drop_calls = counters_.drop_calls.load();
  s.unmap_path = std::string(os::to_string(pager_.drop_method())) + " (MADV_DONTNEED)";
  s.write_protect_path = uffd_.write_protect_enabled() ? "UFFDIO_WRITEPROTECT per run of victims" : "none (no write-protect)";
  s.resident_bytes = budget_.resident();
  s.budget_bytes = budget_.budget();
  s.peak_resident_bytes = budget_.peak();
  s.fault_latency = counters_.fault_latency.snapshot();
  s.fetch_latency = counters_.fetch_latency.snapshot();
  s.fault_stages = snapshot_of(counters_.fault_stages);
  s.evict_stages = snapshot_of(counters_.evict_stages);
  auto regions = regions_.snapshot();
  s.regions = regions->size();
  s.deferred_bytes = deferred_bytes_.load();
  s.takeovers = counters_.takeovers.load();
  for (const auto& region : *regions) {
    s.managed_bytes += region->length();
    s.metadata_bytes += region->metadata_bytes();
  }
  s.pool_capacity = pool_->capacity();
  s.pool_reserved = pool_->reserved();
  for (size_t i = 0; i < pool_->tier_count(); ++i) {
    const tier::Tier& t = pool_->tier(i);
    TierStats ts{t.name(), tier::to_string(t.health()), t.capacity(), t.counters()};
    s.bytes_read += ts.counters.bytes_read;
    s.bytes_written += ts.counters.bytes_written;
    s.tiers.push_back(std::move(ts));
  }
  return s;
}

std::string Engine::describe() const {
  char text[512];
  std::snprintf(text, sizeof text,
                "userfaultfd via %s (kernel features: %s); block %s, subblock %s, CSF %s, %u fault threads; "
                "local DRAM %s; second tier %s in %zu element(s)",
                uffd_.open_method(), uffd_.features().describe().c_str(), format_size(options_.block_size).c_str(),
                format_size(options_.subblock_size).c_str(), options_.csf ? "on" : "off", options_.fault_threads,
                format_size(budget_.budget()).c_str(), format_size(pool_->capacity()).c_str(), pool_->tier_count());
  return text;
}

}  // namespace emp::core
