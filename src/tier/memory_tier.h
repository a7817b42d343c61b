// MemoryTier: a tier held in this process's own (anonymous, unregistered) memory. Used
// by tests and as the reference backend of the conformance suite. Thread-safe for
// disjoint ranges (plain memcpy).
#pragma once

#include <memory>

#include "os/mapping.h"
#include "tier/tier.h"

namespace emp::tier {

class MemoryTier final : public Tier {
 public:
  static std::unique_ptr<MemoryTier> create(uint64_t capacity);  // throws
  // Test hook: the raw bytes behind the tier (e.g. to corrupt a stored block).
  std::byte* raw_data() noexcept { return storage_.data(); }
  // The child's copy of the memory is its own (fork copied it): the child's tier keeps
  // that copy.
  std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation) override;

 protected:
  Status read_impl(std::span<const IoSpan> spans) noexcept override;
  Status write_impl(std::span<const IoSpan> spans) noexcept override;

 private:
  MemoryTier(os::Mapping storage, uint64_t capacity);
  os::Mapping storage_;
};

}  // namespace emp::tier
