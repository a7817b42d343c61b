// LeaseWorker: the O(size) work of leases, off vmd's control loop. Creating a lease's
// memory (lend the pool's extent, allocate and lock a memory file) and retiring it
// (free the file, allocate and lock the extent again) take about a second per GiB
// here; done on the loop they would stall every other client's handshake and
// heartbeat. One thread ("vmd-lease") runs the jobs in order — so a retired extent is
// back in the pool before a later lease borrows it — and signals completions on an
// eventfd that the control loop polls. A new lease is granted as soon as its pages are
// allocated; locking them (the slow part) is background work that waits while any
// creation or retirement is queued.
//
// Thread-safety: create()/retire()/take_completed() from the control loop; the worker
// touches only the pool ranges its jobs name. Lock order: mu_ only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "vmd/lease_memory.h"
#include "vmd/pool_memory.h"

namespace emp::vmd {

class LeaseWorker {
 public:
  struct Completion {
    uint64_t token = 0;
    std::shared_ptr<LeaseMemory> memory;  // create: the new memory, or null with `error`
    std::string error;
  };

  explicit LeaseWorker(PoolMemory& pool);  // throws
  ~LeaseWorker();                           // finishes the queued jobs, then joins
  LeaseWorker(const LeaseWorker&) = delete;
  LeaseWorker& operator=(const LeaseWorker&) = delete;

  int event_fd() const noexcept { return event_fd_.get(); }
  // Lends [offset, offset+size) of the pool to a new lease memory; completes with `token`.
  void create(uint64_t token, uint64_t offset, uint64_t size);
  // Frees `memory` (its last reference, once the data planes let go) and takes the
  // extent back into the pool. No completion.
  void retire(std::shared_ptr<LeaseMemory> memory, uint64_t offset, uint64_t size);
  // Completed creations since the last call (clears the eventfd).
  std::vector<Completion> take_completed();

 private:
  void run() noexcept;

  PoolMemory& pool_;
  UniqueFd event_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;        // creations and retirements, in order
  std::deque<std::function<void()>> background_;  // locking granted leases
  std::vector<Completion> completed_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace emp::vmd
