#include "tier/lazy_tier.h"

#include "common/log.h"

namespace emp::tier {

LazyTier::LazyTier(std::string name, uint64_t capacity, Opener opener)
    : Tier(std::move(name), capacity), opener_(std::move(opener)) {}

Tier* LazyTier::open() noexcept {
  if (Tier* tier = opened()) return tier;
  std::lock_guard lock(mu_);
  if (tier_ || failed_.load()) return tier_.get();
  try {
    auto tier = opener_();
    for (const auto& [base, length] : buffers_) throw_if_error(tier->register_buffer(base, length));
    tier_ = std::move(tier);
    opened_.store(tier_.get(), std::memory_order_release);
    EMP_INFO("tier", "opened %s for this forked process's own evictions", tier_->describe().c_str());
  } catch (const std::exception& error) {
    failed_.store(true);
    EMP_ERROR("tier", "this forked process cannot open a second tier of its own (%s); it evicts only into the "
              "space its parent gave it at the fork", error.what());
  }
  return tier_.get();
}

Status LazyTier::register_buffer(void* base, size_t length) noexcept {
  std::lock_guard lock(mu_);
  if (tier_) return tier_->register_buffer(base, length);
  try {
    buffers_.emplace_back(base, length);
  } catch (...) {
    return Status::error(ENOMEM, "registering a buffer");
  }
  return Status::ok();
}

TierHealth LazyTier::health() const noexcept {
  if (failed_.load()) return TierHealth::kLost;
  Tier* tier = opened();
  return tier ? tier->health() : TierHealth::kHealthy;
}

std::string LazyTier::describe() const {
  if (Tier* tier = opened()) return tier->describe();
  return name() + (failed_.load() ? " (could not be opened)" : " (opened at its first eviction)");
}

std::optional<DonorState> LazyTier::donor_state() const {
  Tier* tier = opened();
  return tier ? tier->donor_state() : std::nullopt;
}

uint64_t LazyTier::data_epoch() const noexcept {
  Tier* tier = opened();
  return tier ? tier->data_epoch() : 0;
}

void LazyTier::abandon_in_child() noexcept {
  if (Tier* tier = opened()) tier->abandon_in_child();
}

std::unique_ptr<Tier::ChildPreparation> LazyTier::prepare_child() noexcept {
  Tier* tier = opened();
  return tier ? tier->prepare_child() : nullptr;
}

std::unique_ptr<Tier> LazyTier::continue_in_child(std::unique_ptr<ChildPreparation> preparation) {
  if (Tier* tier = opened()) return tier->continue_in_child(std::move(preparation));
  return std::make_unique<LazyTier>(name(), capacity(), opener_);
}

void LazyTier::forget(uint64_t offset, uint64_t length) noexcept {
  if (Tier* tier = opened()) tier->forget(offset, length);
}

Status LazyTier::read_impl(std::span<const IoSpan> spans) noexcept {
  Tier* tier = opened();
  if (!tier) return Status::error(EIO, "nothing was written to this forked process's own tier");
  return tier->read_batch(spans);
}

Status LazyTier::write_impl(std::span<const IoSpan> spans) noexcept {
  Tier* tier = open();
  if (!tier) return Status::error(EIO, "this forked process's own tier could not be opened");
  return tier->write_batch(spans);
}

}  // namespace emp::tier
