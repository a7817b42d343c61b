// FaultyTier: wraps a real MemoryTier and fails reads or writes on demand (EIO), reports
// a chosen health, and can lose everything written (as a restarted donor does), to test
// that a second-tier failure never loses data and is reported clearly. Thread-safe
// except lose_data(), which must not race with I/O.
#pragma once

#include <atomic>
#include <memory>

#include "tier/memory_tier.h"

namespace emp::testing {

class FaultyTier final : public tier::Tier {
 public:
  explicit FaultyTier(uint64_t capacity) : Tier("faulty-memory", capacity), inner_(tier::MemoryTier::create(capacity)) {}
  std::atomic<bool> fail_reads{false};
  std::atomic<bool> fail_writes{false};
  std::atomic<tier::TierHealth> reported_health{tier::TierHealth::kHealthy};

  tier::TierHealth health() const noexcept override { return reported_health.load(); }
  uint64_t data_epoch() const noexcept override { return epoch_.load(); }
  // Forgets everything written (a fresh, zeroed store) and moves the data epoch.
  void lose_data() {
    inner_ = tier::MemoryTier::create(capacity());
    epoch_.fetch_add(1);
  }

 protected:
  Status read_impl(std::span<const tier::IoSpan> spans) noexcept override {
    if (fail_reads) return Status::error(EIO, "injected read failure");
    return inner_->read_batch(spans);
  }
  Status write_impl(std::span<const tier::IoSpan> spans) noexcept override {
    if (fail_writes) return Status::error(EIO, "injected write failure");
    return inner_->write_batch(spans);
  }

 private:
  std::unique_ptr<tier::MemoryTier> inner_;
  std::atomic<uint64_t> epoch_{0};
};

}  // namespace emp::testing
