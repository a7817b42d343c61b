// Tier: one second-tier store (in-memory, file/device, remote donor) seen as a flat,
// byte-addressed space of `capacity()` bytes.
//
// The public read/write calls are non-virtual: they check bounds and alignment, count
// bytes and operations, and then call the backend's *_impl hook (the navy-style split).
// Every call is noexcept and thread-safe; backends must allow concurrent calls on
// disjoint ranges. Buffers passed in should come from buffers registered with
// register_buffer() (RDMA backends need that; others ignore it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/status.h"
#include "os/page.h"

namespace emp::tier {

inline constexpr size_t kTierAlignment = os::kPageSize;  // of every I/O's offset and length

struct IoSpan {
  uint64_t offset;  // within the tier
  void* buffer;     // local memory (read: destination, write: source)
  size_t length;
};

struct TierCounters {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t read_ops = 0;
  uint64_t write_ops = 0;
  uint64_t errors = 0;
};

enum class TierHealth { kHealthy, kDegraded, kLost };

// What a remote donor's tier reports beyond the counters (emp donors).
struct DonorState {
  std::string provider;  // tcp, verbs, shm
  uint64_t lease_id = 0;
  uint64_t reconnects = 0;
  bool data_lost = false;
};
const char* to_string(TierHealth health) noexcept;

class Tier {
 public:
  Tier(std::string name, uint64_t capacity) : name_(std::move(name)), capacity_(capacity) {}
  virtual ~Tier() = default;
  Tier(const Tier&) = delete;
  Tier& operator=(const Tier&) = delete;

  const std::string& name() const noexcept { return name_; }
  uint64_t capacity() const noexcept { return capacity_; }

  Status read(uint64_t offset, void* buffer, size_t length) noexcept {
    IoSpan span{offset, buffer, length};
    return read_batch({&span, 1});
  }
  Status write(uint64_t offset, const void* buffer, size_t length) noexcept {
    IoSpan span{offset, const_cast<void*>(buffer), length};
    return write_batch({&span, 1});
  }
  // All spans complete (or the first error is returned) before these return.
  Status read_batch(std::span<const IoSpan> spans) noexcept { return run_counted(spans, false); }
  Status write_batch(std::span<const IoSpan> spans) noexcept { return run_counted(spans, true); }

  // Makes [base, base+length) usable as an I/O buffer (e.g. RDMA registration).
  virtual Status register_buffer(void* /*base*/, size_t /*length*/) noexcept { return Status::ok(); }
  virtual TierHealth health() const noexcept { return TierHealth::kHealthy; }
  virtual std::string describe() const { return name_; }
  // Set for remote donors only.
  virtual std::optional<DonorState> donor_state() const { return std::nullopt; }
  // Moves when the tier loses what was written to it (a donor that came back with a
  // fresh lease); a mirror then rebuilds that copy. 0 for tiers that cannot.
  virtual uint64_t data_epoch() const noexcept { return 0; }
  // In a forked child, on the parent's tiers: closes this process's copies of the
  // parent's connections and files (no traffic, no locks), so they end when the parent
  // ends them. The child's own connections come from continue_in_child().
  virtual void abandon_in_child() noexcept {}

  // --- fork() (tier/fork_watch.h) ---
  // What a forked child's copy of this tier is made from, made in the parent before the
  // fork. A donor attaches a connection of the child's own to the lease there, so the
  // lease lives on while the child does, whether or not the parent has exited. May
  // block on the network; never throws (a failed preparation leaves the child to
  // reconnect on its own).
  struct ChildPreparation {
    virtual ~ChildPreparation() = default;
    // In the parent after the fork: drop this process's copies (no traffic).
    virtual void abandon() noexcept {}
  };
  virtual std::unique_ptr<ChildPreparation> prepare_child() noexcept { return nullptr; }
  // In the forked child (single-threaded), on its copy of the parent's object: the tier
  // the child uses instead, over the same data — it reads what was written before the
  // fork and writes where its pool lets it. Throws when the tier cannot continue here.
  virtual std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation);
  // [offset, offset + length) holds nothing any more (its space is being given to a
  // forked child): a tier that tracks written data forgets it there.
  virtual void forget(uint64_t /*offset*/, uint64_t /*length*/) noexcept {}

  TierCounters counters() const noexcept;

 protected:
  virtual Status read_impl(std::span<const IoSpan> spans) noexcept = 0;
  virtual Status write_impl(std::span<const IoSpan> spans) noexcept = 0;

 private:
  Status check(std::span<const IoSpan> spans) const noexcept;
  Status run_counted(std::span<const IoSpan> spans, bool is_write) noexcept;

  std::string name_;
  uint64_t capacity_;
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0}, read_ops_{0}, write_ops_{0}, errors_{0};
};

}  // namespace emp::tier
