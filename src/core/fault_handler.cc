#include "core/fault_handler.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <system_error>

#include "common/log.h"
#include "os/page.h"

namespace emp::core {
namespace {

constexpr uint64_t kReadaheadBytes = 1 << 20;  // the most one readahead brings in

}  // namespace

uint64_t FaultHandler::staging_bytes(const Options& options) noexcept {
  uint64_t bytes = std::max<uint64_t>(options.block_size, 64 << 10);
  if (options.prefetch || options.elastic) bytes = std::max(bytes, kReadaheadBytes);
  return bytes;
}

FaultHandler::FaultHandler(os::Userfaultfd& uffd, RegionTable& regions, Pager& pager, Evictor& evictor,
                           ClockPolicy& clock, FrameBudget& budget, EngineCounters& counters, tier::Pool& pool,
                           const Options& options, FatalHandler fatal)
    : uffd_(uffd),
      regions_(regions),
      pager_(pager),
      evictor_(evictor),
      clock_(clock),
      budget_(budget),
      counters_(counters),
      pool_(pool),
      block_size_(options.block_size),
      staging_bytes_(staging_bytes(options)),
      prefetch_(options.prefetch),
      elastic_(options.elastic),
      max_window_(static_cast<uint32_t>(std::min<uint64_t>(Pager::kMaxAhead, staging_bytes_ / block_size_))),
      fatal_(std::move(fatal)) {}

FaultHandler::~FaultHandler() { stop(); }

void FaultHandler::start(unsigned threads) {
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  pause_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid() || !pause_fd_.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  scratches_.clear();
  scratches_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) {
    auto scratch = Scratch::create(pool_, staging_bytes_);
    throw_if_error(scratch.status());
    scratches_.push_back(std::move(*scratch));
  }
  for (unsigned i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] {
      char name[16];
      std::snprintf(name, sizeof name, "emp-fault-%u", i);
      pthread_setname_np(pthread_self(), name);
      run(i, &scratches_[i]);
    });
  }
}

void FaultHandler::stop() noexcept {
  if (threads_.empty()) return;
  uint64_t one = 1;
  ssize_t ignored = ::write(stop_fd_.get(), &one, sizeof one);
  (void)ignored;
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void FaultHandler::pause() noexcept {
  if (threads_.empty()) return;
  pause_gate_.request();
  uint64_t one = 1;
  ssize_t ignored = ::write(pause_fd_.get(), &one, sizeof one);
  (void)ignored;
  pause_gate_.wait_parked(static_cast<uint32_t>(threads_.size()));
}

void FaultHandler::resume() noexcept {
  if (threads_.empty()) return;
  uint64_t value;
  ssize_t ignored = ::read(pause_fd_.get(), &value, sizeof value);  // poll() sleeps again
  (void)ignored;
  pause_gate_.resume();
}

void FaultHandler::run(unsigned /*index*/, Scratch* scratch) noexcept {
  constexpr size_t kBatch = 16;
  uffd_msg messages[kBatch];
  pollfd fds[3] = {{uffd_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {pause_fd_.get(), POLLIN, 0}};
  uint64_t last_fault_ns = 0;
  WaitPolicy wait;
  RegionTable::View regions(regions_);
  for (;;) {
    if (pause_gate_.requested()) {
      regions.drop();
      pause_gate_.park();
      continue;
    }
    ssize_t n = ::read(uffd_.fd(), messages, sizeof messages);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        EMP_ERROR("fault", "reading userfaultfd: %s", std::strerror(errno));
        return;
      }
      if (monotonic_ns() - last_fault_ns < wait.spin_ns()) {
        sched_yield();
        continue;
      }
      regions.drop();
      int ready = ::poll(fds, 3, -1);
      if (ready < 0 && errno != EINTR) return;
      if (fds[1].revents & POLLIN) return;
      continue;
    }
    uint64_t start = monotonic_ns();
    if (last_fault_ns) wait.note_gap(start - last_fault_ns);
    size_t count = static_cast<size_t>(n) / sizeof(uffd_msg);
    for (size_t i = 0; i < count; ++i) handle(messages[i], regions, *scratch, start);
    last_fault_ns = monotonic_ns();
  }
}

void FaultHandler::handle(const uffd_msg& message, RegionTable::View& regions, Scratch& scratch,
                          uint64_t start_ns) noexcept {
  if (message.event != UFFD_EVENT_PAGEFAULT) return;  // no other events are enabled
  uintptr_t address = message.arg.pagefault.address;
  Region* region = regions.find(address);
  if (!region) {
    (void)pager_.wake(address);  // released meanwhile: let the thread retry
    return;
  }
  if (message.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
    on_write_protect(*region, address);
    return;
  }
  uint64_t fetches_before = counters_.faults_fetch.load(std::memory_order_relaxed);
  on_missing(*region, address, message.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE, scratch, start_ns);
  uint64_t elapsed = monotonic_ns() - start_ns;
  counters_.fault_latency.record(elapsed);
  if (counters_.faults_fetch.load(std::memory_order_relaxed) != fetches_before) counters_.fetch_latency.record(elapsed);
}

void FaultHandler::charge(uint64_t bytes, Scratch& scratch, FaultClock& clock) noexcept {
  struct Lap {
    FaultClock& clock;
    ~Lap() { clock.lap(FaultStage::kCharge); }
  } lap{clock};
  if (budget_.try_charge(bytes)) {
    evictor_.kick();
    return;
  }
  evictor_.kick();
  for (int attempt = 0; attempt < 16; ++attempt) {
    evictor_.evict_direct(bytes, scratch);
    if (budget_.try_charge(bytes)) return;
  }
  // Every resident block is busy: allow the documented slack, then wait for an eviction
  // to make room (uncharge wakes us).
  // An eviction is retried every millisecond too: on a loaded machine the evictor may
  // not get a CPU for that long.
  constexpr uint64_t kRoomTimeoutNs = 20'000'000, kRetryNs = 1'000'000;
  for (uint64_t waited = 0; waited < kRoomTimeoutNs; waited += kRetryNs) {
    if (budget_.wait_and_charge(bytes, kRetryNs)) return;
    evictor_.evict_direct(bytes, scratch);
  }
  EMP_LOG_LIMITED(log::Level::kWarn, "fault",
                  "DRAM budget exhausted and nothing evictable for 20 ms (second tier failing?); exceeding the budget");
  budget_.force_charge(bytes);
}

void FaultHandler::on_missing(Region& region, uintptr_t address, bool is_write, Scratch& scratch,
                              uint64_t start_ns) noexcept {
  size_t index = region.block_index(address);
  BlockMeta& block = region.block(index);
  uint32_t word = block.acquire();
  // Fetching faults are timed stage by stage (first touches need no tier and would hide them).
  FaultClock clock(BlockMeta::is_evicted(word) ? &counters_.fault_stages : nullptr, start_ns);
  clock.lap(FaultStage::kAcquire);
  if (region.retired() || BlockMeta::is_resident(word)) {
    if (!region.retired()) {
      // Usually a race with the fill that just finished. If the page is really absent,
      // the kernel dropped it behind our back (wipe-on-fork, a raw MADV_DONTNEED): it
      // reads zeros, as it would without EMP.
      Status error;
      (void)uffd_.zeropage(reinterpret_cast<void*>(os::page_floor(address)), os::kPageSize, /*wake=*/true, &error);
    }
    block.release(word);
    (void)pager_.wake(address);
    counters_.faults_local.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t length = region.block_range(index).length;
  charge(length, scratch, clock);
  // A tier rides out what it can recover from itself (a remote donor reconnects within
  // its deadlines); one more immediate attempt covers a fill that lost a race with the
  // address space changing. Then the data is unavailable.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (pager_.fill(region, index, word, address, is_write, clock_.epoch(), scratch, clock)) {
      clock.finish();
      read_ahead(region, index, is_write, scratch);
      return;
    }
  }
  budget_.uncharge(length);
  block.release(word);
  char message[160];
  std::snprintf(message, sizeof message,
                "cannot read back memory at %#lx from the second tier (%s); its data is unavailable", address,
                block.slot.valid() ? pool_.tier(block.slot.tier()).name().c_str() : "no tier");
  fatal_(message);
}

void FaultHandler::read_ahead(Region& region, size_t index, bool is_write, Scratch& scratch) noexcept {
  if ((!prefetch_ && !elastic_) || max_window_ < 2) return;
  FaultLocality::Window window = region.locality(index).next_window(index, elastic_, max_window_);
  if (window.blocks < 2) return;
  size_t count = window.blocks - 1;
  // A window was earned by locality: make room for it now rather than stop at the
  // evictor's small headroom (the faulting thread already runs again).
  uint64_t want = count * block_size_, room = budget_.budget() > budget_.resident() ? budget_.budget() - budget_.resident() : 0;
  if (room < want) evictor_.evict_direct(want - room, scratch);
  size_t filled = 0;
  if (!window.backward) {
    filled = pager_.fill_ahead(region, index + 1, count, is_write, scratch);
  } else if (index > 0) {
    count = std::min(count, index);
    filled = pager_.fill_ahead(region, index - count, count, is_write, scratch);
  }
  if (filled) evictor_.kick();
}

size_t FaultHandler::write_run_after(Region& region, size_t index) noexcept {
  // A write stream over data a read stream brought in (an in-place sort, a copy): the
  // zone reads as a stream and the block before this one was just written. Then the next
  // clean resident blocks (up to the readahead window) are unprotected with this one, in
  // one call, instead of one write-protect fault per block. Random writes never get here
  // (their zone's window stays at one block).
  constexpr uint32_t kMinStreamWindow = 4;
  uint32_t window = region.locality(index).window();
  if (window < kMinStreamWindow || index == 0 || index + 1 >= region.block_count()) return 0;
  uint32_t before = region.block(index - 1).load();
  if (!BlockMeta::is_resident(before) || !BlockMeta::is_dirty(before)) return 0;
  return std::min<size_t>(window, region.block_count() - index - 1);
}

void FaultHandler::on_write_protect(Region& region, uintptr_t address) noexcept {
  size_t index = region.block_index(address);
  BlockMeta& block = region.block(index);
  uint32_t word = block.acquire();
  if (!region.retired() && BlockMeta::is_resident(word)) {
    if (!BlockMeta::is_dirty(word)) {
      pager_.make_dirty(region, index, word, write_run_after(region, index));  // releases the blocks
      return;
    }
    // Already dirty: a stale message, or a page left protected; make sure it is writable.
    BlockRange range = region.block_range(index);
    (void)uffd_.write_protect(range.pointer(), range.length, /*protect=*/false, /*wake=*/true);
    block.release(word);
    return;
  }
  block.release(word);
  (void)pager_.wake(address);  // evicted meanwhile: the thread takes a missing fault next
}

}  // namespace emp::core
