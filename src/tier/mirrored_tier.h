// MirroredTier: EMP_REPLICAS=N — N copies (distinct donors, or donors and a file or
// device) seen as one tier of the smallest copy's capacity. A write goes to every
// copy that is not lost and succeeds when at least one copy took it; a read goes to
// the fastest copy (lowest measured read latency) that holds the data and fails over
// to another on an error, so the application notices a lost donor only as latency.
//
// Which copy holds what: a bit per 4 KiB granule and copy, set when that copy took the
// granule's latest write, cleared when a write to it failed or the copy lost its data
// (Tier::data_epoch() moved: a restarted vmd gave a fresh lease). A rebuild thread
// ("emp-rebuild") copies every granule some copy lacks from a copy that holds it,
// throttled (at most kRebuildBytesPerSecond) so faults keep priority; a rebuild chunk
// and writes to the same granules exclude each other through striped locks, so a
// rebuild never lands stale data over a newer write.
//
// Thread-safety: read/write from any number of threads. Lock order: a batch's stripe
// locks (taken in stripe order) -> the copies' own locks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "tier/tier.h"

namespace emp::tier {

class MirroredTier final : public Tier {
 public:
  static constexpr uint64_t kGranule = 4096;
  static constexpr uint64_t kRebuildBytesPerSecond = 256ULL << 20;

  // Takes 2..3 copies. Throws std::invalid_argument for fewer than two.
  static std::unique_ptr<MirroredTier> create(std::vector<std::unique_ptr<Tier>> copies);
  ~MirroredTier() override;

  Status register_buffer(void* base, size_t length) noexcept override;
  TierHealth health() const noexcept override;
  std::string describe() const override;
  uint64_t data_epoch() const noexcept override { return 0; }  // never loses data while one copy lives
  void abandon_in_child() noexcept override {
    for (auto& copy : copies_) copy.tier->abandon_in_child();
  }
  // fork(): each copy prepares and continues; the child's mirror knows what its parent's
  // knew at the fork. It does not rebuild (its parent rebuilds what was written before
  // the fork; a copy lost in the child is read from the others).
  std::unique_ptr<ChildPreparation> prepare_child() noexcept override;
  std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation) override;
  // Also waits for a rebuild chunk in flight there, so none lands after it.
  void forget(uint64_t offset, uint64_t length) noexcept override;

  size_t copy_count() const noexcept { return copies_.size(); }
  const Tier& copy(size_t index) const noexcept { return *copies_[index].tier; }
  // Granules written but missing on some live copy, and bytes rebuilt so far.
  uint64_t degraded_bytes() const noexcept;
  uint64_t rebuilt_bytes() const noexcept { return rebuilt_bytes_.load(std::memory_order_relaxed); }

 protected:
  Status read_impl(std::span<const IoSpan> spans) noexcept override;
  Status write_impl(std::span<const IoSpan> spans) noexcept override;

 private:
  struct Copy {
    std::unique_ptr<Tier> tier;
    std::unique_ptr<std::atomic<uint64_t>[]> holds;  // a bit per granule
    std::atomic<uint64_t> read_ns{0};                // moving average of a read
    uint64_t seen_epoch = 0;                          // rebuild thread only
  };
  static constexpr size_t kStripes = 64;

  MirroredTier(std::vector<std::unique_ptr<Tier>> copies, uint64_t capacity);
  enum class RebuildStep { kCopied, kNothingMissing, kStuck };
  bool holds(const Copy& copy, std::span<const IoSpan> spans) const noexcept;
  // Sets or clears the bits of the granules [first, first+count) / of `spans`; clearing
  // a copy's bit counts as a loss (health() is degraded until a rebuild pass is clean).
  void mark_range(std::atomic<uint64_t>* bits, uint64_t first, uint64_t count, bool held) noexcept;
  void mark(std::atomic<uint64_t>* bits, std::span<const IoSpan> spans, bool held) noexcept;
  void lose(Copy& copy, std::span<const IoSpan> spans) noexcept;
  // The stripes of `spans`, a bit each (writes lock them shared, a rebuild chunk its
  // one stripe exclusively).
  static uint64_t stripes_of(std::span<const IoSpan> spans) noexcept;
  void rebuild_loop() noexcept;
  RebuildStep rebuild_one_chunk() noexcept;

  std::vector<Copy> copies_;
  uint64_t granules_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> written_;  // a bit per granule ever written
  mutable std::shared_mutex stripes_[kStripes];
  std::atomic<uint64_t> rebuilt_bytes_{0};
  // Losses so far, and the count at the last rebuild pass that found nothing missing:
  // health() compares the two instead of scanning the bitmaps on every call.
  std::atomic<uint64_t> losses_{0};
  std::atomic<uint64_t> complete_at_{0};
  uint64_t rebuild_cursor_ = 0;  // rebuild thread only
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread rebuilder_;
};

}  // namespace emp::tier
