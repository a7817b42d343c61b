// FaultyTier: wraps a real MemoryTier and fails reads or writes on demand (EIO), to test
// that a second-tier failure never loses data and is reported clearly. Thread-safe.
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
};

}  // namespace emp::testing
