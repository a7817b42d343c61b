// FileTier: a region of a block device (/dev/nvme1n1) or of a regular file used like a
// device. I/O is O_DIRECT through io_uring; a small set of rings, each guarded by its own
// mutex, lets several threads keep I/O in flight at once for batches. Single requests,
// files in memory (tmpfs) and files that refuse O_DIRECT use plain pread/pwrite on the
// calling thread. Files are created (and
// extended) when missing; devices must be large enough. Thread-safe.
#pragma once

#include <liburing.h>

#include <array>
#include <memory>
#include <mutex>

#include "common/mem_path.h"
#include "common/unique_fd.h"
#include "tier/tier.h"

namespace emp::tier {

class FileTier final : public Tier {
 public:
  // Opens/creates the file or device described by `spec`; throws std::system_error
  // or std::invalid_argument with a message naming the element.
  static std::unique_ptr<FileTier> open(const TierSpec& spec);
  ~FileTier() override;
  bool direct_io() const noexcept { return direct_; }
  std::string describe() const override;
  // The child shares the open file (and with it the region's lock) through a duplicate
  // descriptor, with rings of its own; abandon_in_child() drops its copies of the
  // parent's rings.
  std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation) override;
  void abandon_in_child() noexcept override;

 protected:
  Status read_impl(std::span<const IoSpan> spans) noexcept override;
  Status write_impl(std::span<const IoSpan> spans) noexcept override;

 private:
  static constexpr size_t kRings = 4;
  static constexpr unsigned kRingDepth = 64;
  struct Ring {
    std::mutex mutex;
    io_uring ring{};
    bool ready = false;
  };

  FileTier(const TierSpec& spec, UniqueFd fd, bool direct, bool in_memory);
  bool uses_io_uring(std::span<const IoSpan> spans) const noexcept;
  Status submit(std::span<const IoSpan> spans, bool is_write) noexcept;
  Status submit_on(Ring& ring, std::span<const IoSpan> spans, bool is_write) noexcept;
  Status transfer_in_place(std::span<const IoSpan> spans, bool is_write) noexcept;
  // pread/pwrite of [offset, offset + length) of the tier until done (EINTR retried).
  Status transfer_range(char* buffer, size_t length, uint64_t offset, bool is_write, const char* what) noexcept;

  TierSpec spec_;
  std::string path_;
  uint64_t base_offset_;
  UniqueFd fd_;
  bool direct_;
  bool in_memory_;  // tmpfs: I/O is a memory copy
  std::array<Ring, kRings> rings_;
  std::atomic<unsigned> next_ring_{0};
};

}  // namespace emp::tier
