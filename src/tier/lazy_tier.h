// LazyTier: a second-tier element opened at its first write. A forked child's pool ends
// in such tiers, made from the memory path (tier/fork_watch.h): space of the child's own
// beyond what its parent gave it at the fork. Most children never evict that far (or
// exec at once), and opening a donor lease or a file for every fork would make every
// fork pay for it. A tier that fails to open reports kLost (the pool then skips it)
// and logs why once. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tier/tier.h"

namespace emp::tier {

class LazyTier final : public Tier {
 public:
  using Opener = std::function<std::unique_ptr<Tier>()>;  // throws with a message naming the element
  LazyTier(std::string name, uint64_t capacity, Opener opener);

  Status register_buffer(void* base, size_t length) noexcept override;
  TierHealth health() const noexcept override;
  std::string describe() const override;
  std::optional<DonorState> donor_state() const override;
  uint64_t data_epoch() const noexcept override;
  void abandon_in_child() noexcept override;
  std::unique_ptr<ChildPreparation> prepare_child() noexcept override;
  std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation) override;
  void forget(uint64_t offset, uint64_t length) noexcept override;

 protected:
  Status read_impl(std::span<const IoSpan> spans) noexcept override;
  Status write_impl(std::span<const IoSpan> spans) noexcept override;

 private:
  Tier* opened() const noexcept { return opened_.load(std::memory_order_acquire); }
  Tier* open() noexcept;  // the tier, opened now if need be; null when it cannot be

  Opener opener_;
  mutable std::mutex mu_;  // guards opening and buffers_
  std::unique_ptr<Tier> tier_;
  std::atomic<Tier*> opened_{nullptr};
  std::atomic<bool> failed_{false};
  std::vector<std::pair<void*, size_t>> buffers_;  // registered before opening
};

}  // namespace emp::tier
