// LeaseMemory: the memory of one lease — its own sealed memory file (memfd), mapped
// and locked in vmd. A same-host client receives a duplicate of the file descriptor
// over vmd's local control socket and reads and writes it with pread/pwrite; tcp and
// verbs clients reach the mapping through vmd's data servers. Because every lease has
// its own file, a client can reach only its lease, and a new lease always starts as
// zeros. The file is sealed against shrinking and growing, so no client can make vmd's
// mapping fault. On destruction the pages are punched out (freed, reading as zeros
// even for a client that still holds the descriptor), then unmapped and closed.
// Shared (std::shared_ptr) by the lease table and the serving threads, so the mapping
// outlives the last request that touches it. Immutable after creation; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/unique_fd.h"

namespace emp::vmd {

class LeaseMemory {
 public:
  // Creates `bytes` of memory file, allocates its pages (now, not at first access) and
  // maps it (lazily: page tables fill as vmd's data servers touch it). Throws
  // std::system_error.
  static std::shared_ptr<LeaseMemory> create(uint64_t bytes);
  // Maps every page and locks it in RAM (slow: about 0.6 s per GiB here). Best effort.
  void lock() noexcept;
  ~LeaseMemory();
  LeaseMemory(const LeaseMemory&) = delete;
  LeaseMemory& operator=(const LeaseMemory&) = delete;

  std::byte* data() const noexcept { return base_; }
  uint64_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_.get(); }

 private:
  LeaseMemory() = default;
  UniqueFd fd_;
  std::byte* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace emp::vmd
