#include "tier/tier.h"

#include <stdexcept>

namespace emp::tier {

const char* to_string(TierHealth health) noexcept {
  switch (health) {
    case TierHealth::kHealthy: return "healthy";
    case TierHealth::kDegraded: return "degraded";
    case TierHealth::kLost: return "lost";
  }
  return "?";
}

std::unique_ptr<Tier> Tier::continue_in_child(std::unique_ptr<ChildPreparation> /*preparation*/) {
  throw std::runtime_error("the second-tier element " + name_ + " cannot be used by a forked process");
}

Status Tier::check(std::span<const IoSpan> spans) const noexcept {
  for (const IoSpan& span : spans) {
    if (span.length == 0 || span.buffer == nullptr) return Status::error(EINVAL, "tier I/O with empty buffer");
    if (span.offset % kTierAlignment || span.length % kTierAlignment)
      return Status::error(EINVAL, "tier I/O not 4 KiB aligned");
    if (span.offset > capacity_ || span.length > capacity_ - span.offset)
      return Status::error(ERANGE, "tier I/O beyond capacity");
  }
  return Status::ok();
}

Status Tier::run_counted(std::span<const IoSpan> spans, bool is_write) noexcept {
  Status status = check(spans);
  if (status) status = is_write ? write_impl(spans) : read_impl(spans);
  if (!status) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return status;
  }
  uint64_t bytes = 0;
  for (const IoSpan& span : spans) bytes += span.length;
  (is_write ? bytes_written_ : bytes_read_).fetch_add(bytes, std::memory_order_relaxed);
  (is_write ? write_ops_ : read_ops_).fetch_add(spans.size(), std::memory_order_relaxed);
  return status;
}

TierCounters Tier::counters() const noexcept {
  TierCounters c;
  c.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  c.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  c.read_ops = read_ops_.load(std::memory_order_relaxed);
  c.write_ops = write_ops_.load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace emp::tier
