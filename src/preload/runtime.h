// Runtime: the one global object of libemp.so (the preload entry point), built before
// main() from the environment: the engine, the heap arena mimalloc allocates from, the
// control socket and the dram:auto controller, and the fork protocol.
//
// Modes: inactive (no EMP_MEM_PATH: every call passes through), active, and forked
// child (fork() copied the process but no EMP thread runs in it: calls pass through,
// and memory the parent had evicted is made inaccessible with a clear message on touch,
// never silently read as zeros). The object is never destroyed: application threads may
// touch managed memory until the process is gone. Thread-safe after start().
#pragma once

#include <signal.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/control_server.h"
#include "control/dram_auto.h"
#include "common/range_set.h"
#include "common/unique_fd.h"
#include "core/engine.h"
#include "preload/heap_arena.h"
#include "tier/pool.h"

namespace emp::preload {

class Runtime {
 public:
  enum class Mode { kActive, kForkedChild };

  // Reads the environment and starts EMP; nullptr when EMP_MEM_PATH / EMP_PMEM_PATH is
  // unset. Throws (with a one-line message) on any configuration or start-up error.
  static Runtime* start(char** envp);

  Mode mode() const noexcept { return mode_.load(std::memory_order_acquire); }
  bool active() const noexcept { return mode() == Mode::kActive; }
  core::Engine& engine() noexcept { return *engine_; }
  // The heap arena; nullptr in guest-RAM mode (emp-qemu), where the heap stays with glibc.
  HeapArena* arena() noexcept { return arena_.get(); }
  // emp-qemu: the size of the one mapping to manage (0: the heap and every anonymous mapping).
  uint64_t guest_ram_bytes() const noexcept { return guest_ram_bytes_; }
  // emp-qemu with memory-backend-memfd: the memfd behind the managed guest RAM, so QEMU's
  // hole punches in it (fallocate) become discards of the guest RAM.
  struct GuestMemfd {
    int fd = -1;
    uint64_t device = 0, inode = 0;
    uintptr_t base = 0;  // where the file's offset 0 is mapped
    size_t length = 0;
  };
  void set_guest_memfd(const GuestMemfd& memfd) noexcept {
    guest_memfd_ = memfd;
    has_guest_memfd_.store(true, std::memory_order_release);
  }
  const GuestMemfd* guest_memfd() const noexcept {
    return has_guest_memfd_.load(std::memory_order_acquire) ? &guest_memfd_ : nullptr;
  }

  // MADV_WIPEONFORK / MADV_KEEPONFORK bookkeeping (a child reads zeros there); munmap
  // and MAP_FIXED replacements forget their range (wipe = false).
  void note_wipe_on_fork(uintptr_t start, size_t length, bool wipe) noexcept;

  // At exit: the EMP_STATS=1 summary, and the control socket is removed (the engine keeps
  // running until the process is gone: other threads may still touch managed memory).
  void at_exit() noexcept;
  // _exit/_Exit (no destructors run): removes this process's control socket.
  void at_quick_exit() noexcept;

 private:
  Runtime() = default;
  // fork() itself (libemp.so interposes it): prepares the child's share of the second
  // tier before the process is copied; false (errno ENOMEM) when it cannot be had.
 public:
  bool prepare_fork() noexcept;

 private:
  std::unique_ptr<tier::ChildShare> make_fork_share(bool* refused) noexcept;
  static void before_fork() noexcept;
  static void after_fork_in_parent() noexcept;
  static void after_fork_in_child() noexcept;
  bool wiped_on_fork(uintptr_t start, size_t length) const noexcept;
  void start_control(const char* mem_path, bool dram_auto);

  std::atomic<Mode> mode_{Mode::kActive};
  std::unique_ptr<core::Engine> engine_;
  std::unique_ptr<HeapArena> arena_;
  std::unique_ptr<control::DramAutoController> dram_auto_;  // dram:auto only
  std::unique_ptr<control::ControlServer> control_;          // `emp` commands
  std::string mem_path_;
  uint64_t guest_ram_bytes_ = 0;
  GuestMemfd guest_memfd_;
  std::atomic<bool> has_guest_memfd_{false};
  // fork() (tier/fork_watch.h). fork_mutex_ is held from the share's preparation to
  // the end of the fork; the share and socketpair belong to the child being forked.
  std::mutex fork_mutex_;
  std::unique_ptr<tier::ChildShare> fork_share_;
  UniqueFd fork_parent_end_, fork_child_end_;
  std::vector<UniqueFd> lineage_;  // in a forked child: its ends of its ancestors' socketpairs
  sigset_t fork_saved_mask_{};      // the forking thread's signal mask (all are blocked during the fork)
  // What the pool was made from: a forked child's own tiers (opened at first use).
  std::vector<TierSpec> tier_specs_;
  tier::Pool::RemoteFactory remote_factory_;
  unsigned replicas_ = 1;
  std::mutex wipe_mutex_;
  RangeSet wipe_on_fork_;  // the program's MADV_WIPEONFORK ranges (unmapped parts leave it)
};

// The global (nullptr before start-up or when EMP is not asked for).
Runtime* runtime() noexcept;

}  // namespace emp::preload
