#include "tier/memory_tier.h"

#include <cstring>
#include <memory>

namespace emp::tier {

MemoryTier::MemoryTier(os::Mapping storage, uint64_t capacity)
    : Tier("memory", capacity), storage_(std::move(storage)) {}

std::unique_ptr<MemoryTier> MemoryTier::create(uint64_t capacity) {
  auto mapping = os::Mapping::anonymous(capacity);
  throw_if_error(mapping.status());
  return std::unique_ptr<MemoryTier>(new MemoryTier(std::move(*mapping), capacity));
}

std::unique_ptr<Tier> MemoryTier::continue_in_child(std::unique_ptr<ChildPreparation> /*preparation*/) {
  return std::unique_ptr<MemoryTier>(new MemoryTier(std::move(storage_), capacity()));
}

Status MemoryTier::read_impl(std::span<const IoSpan> spans) noexcept {
  for (const IoSpan& span : spans) std::memcpy(span.buffer, storage_.data() + span.offset, span.length);
  return Status::ok();
}

Status MemoryTier::write_impl(std::span<const IoSpan> spans) noexcept {
  for (const IoSpan& span : spans) std::memcpy(storage_.data() + span.offset, span.buffer, span.length);
  return Status::ok();
}

}  // namespace emp::tier
