#include "tier/pool.h"

#include <algorithm>
#include <stdexcept>

#include "tier/file_tier.h"
#include "tier/lazy_tier.h"
#include "tier/mirrored_tier.h"

namespace emp::tier {

// Allocated extents must be expressible as slots, and slots must start where tier I/O may.
static_assert(BuddyAllocator::kUnit % Slot::kOffsetUnit == 0 && Slot::kOffsetUnit % kTierAlignment == 0,
              "slot offsets must be aligned for tier I/O");

Pool::Pool(std::vector<std::unique_ptr<Tier>> tiers) {
  if (tiers.empty()) throw std::invalid_argument("a pool needs at least one second-tier element");
  if (tiers.size() > Slot::kMaxTiers) throw std::invalid_argument("a pool holds at most 255 tiers");
  for (auto& tier : tiers) {
    auto allocator = std::make_unique<BuddyAllocator>(tier->capacity());
    capacity_ += allocator->free_bytes();
    tiers_.push_back(Member{std::move(tier), std::move(allocator), {}, true});
  }
}

std::unique_ptr<Pool> Pool::from_specs(const std::vector<TierSpec>& specs, const RemoteFactory& remote,
                                       unsigned replicas) {
  return std::make_unique<Pool>(tiers_from_specs(specs, remote, replicas, /*lazy=*/false));
}

std::vector<std::unique_ptr<Tier>> Pool::tiers_from_specs(const std::vector<TierSpec>& specs,
                                                          const RemoteFactory& remote, unsigned replicas, bool lazy) {
  if (replicas > 1 && specs.size() % replicas != 0)
    throw std::invalid_argument("EMP_REPLICAS=" + std::to_string(replicas) +
                                " mirrors the second-tier elements in groups of " + std::to_string(replicas) +
                                " (in memory-path order); the memory path has " + std::to_string(specs.size()));
  auto open = [remote](const TierSpec& spec) -> std::unique_ptr<Tier> {
    if (spec.kind != TierSpec::Kind::kRemote) return FileTier::open(spec);
    if (remote) return remote(spec);
    throw std::invalid_argument("memory path element '" + spec.element + "': remote donors are not available here");
  };
  std::vector<std::unique_ptr<Tier>> tiers;
  for (const TierSpec& spec : specs) {
    if (lazy) {
      tiers.push_back(std::make_unique<LazyTier>(spec.element, spec.size_bytes, [open, spec] { return open(spec); }));
    } else {
      tiers.push_back(open(spec));
    }
  }
  if (replicas <= 1) return tiers;
  std::vector<std::unique_ptr<Tier>> mirrors;
  for (size_t first = 0; first < tiers.size(); first += replicas) {
    std::vector<std::unique_ptr<Tier>> copies;
    for (size_t i = first; i < first + replicas; ++i) copies.push_back(std::move(tiers[i]));
    mirrors.push_back(MirroredTier::create(std::move(copies)));
  }
  return mirrors;
}

Status Pool::reserve(uint64_t bytes) noexcept {
  uint64_t current = reserved_.load(std::memory_order_relaxed);
  do {
    if (bytes > capacity_ - current) return Status::error(ENOMEM, "second-tier pool is full");
  } while (!reserved_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
  return Status::ok();
}

uint64_t Pool::free_bytes() const noexcept {
  uint64_t bytes = 0;
  for (const auto& member : tiers_) bytes += member.allocator->free_bytes();
  return bytes;
}

void Pool::unreserve(uint64_t bytes) noexcept { reserved_.fetch_sub(bytes, std::memory_order_relaxed); }

Result<Slot> Pool::allocate(uint64_t bytes) noexcept {
  unsigned start = cursor_.fetch_add(1, std::memory_order_relaxed);
  // Round-robin over the tiers, a forked child's overflow tiers only once the rest is full.
  const size_t preferred = std::min(overflow_, tiers_.size());
  for (auto [first, count] : {std::pair{size_t{0}, preferred}, std::pair{preferred, tiers_.size() - preferred}}) {
    for (size_t i = 0; i < count; ++i) {  // (no iteration when count is 0)
      unsigned index = static_cast<unsigned>(first + (start + i) % count);
      if (tiers_[index].tier->health() == TierHealth::kLost) continue;
      if (auto offset = tiers_[index].allocator->allocate(bytes)) return Slot::make(index, *offset);
    }
  }
  return Status::error(ENOSPC, "second-tier pool has no free extent");
}

void Pool::release(Slot slot, uint64_t bytes) noexcept {
  if (slot.valid() && owns(slot, bytes)) tiers_[slot.tier()].allocator->release(slot.offset(), bytes);
}

bool Pool::owns(Slot slot, uint64_t bytes) const noexcept {
  const Member& member = tiers_[slot.tier()];
  if (member.whole) return true;
  // The share's extent that starts at or before the slot must contain it.
  auto after = std::upper_bound(member.owned.begin(), member.owned.end(), slot.offset(),
                                [](uint64_t offset, const ChildShare::Extent& extent) { return offset < extent.offset; });
  if (after == member.owned.begin()) return false;
  const ChildShare::Extent& extent = *std::prev(after);
  return slot.offset() + bytes <= extent.offset + extent.bytes;
}

std::vector<std::unique_ptr<Tier::ChildPreparation>> Pool::prepare_child_tiers() noexcept {
  std::vector<std::unique_ptr<Tier::ChildPreparation>> preparations;
  try {
    for (auto& member : tiers_) {
      // A tier with nothing allocated holds nothing the child may read: the child
      // attaches to it at its first use (fork-heavy programs then cost the donor nothing).
      bool holds_data = !member.whole || member.allocator->free_bytes() < member.allocator->capacity_bytes();
      preparations.push_back(holds_data ? member.tier->prepare_child() : nullptr);
    }
  } catch (...) {
    preparations.clear();  // no memory: the child's tiers attach by themselves
  }
  return preparations;
}

Status Pool::share_with_child(uint64_t bytes, ChildShare& share) noexcept {
  share.id = begin_child();
  share.bytes = 0;
  share.extents.clear();
  if (bytes == 0) return Status::ok();
  if (Status status = reserve(bytes); !status)
    return Status::error(ENOMEM, "the second tier cannot hold a forked process's copy of the memory beside its parent's");
  uint64_t given = 0;
  try {
    share.extents.reserve(bytes / (BuddyAllocator::kUnit << BuddyAllocator::kMaxOrder) + tiers_.size() + 1);
    while (given < bytes) {
      bool progress = false;
      for (size_t index = 0; index < tiers_.size() && given < bytes; ++index) {
        if (tiers_[index].tier->health() == TierHealth::kLost) continue;
        auto extent = tiers_[index].allocator->take_up_to(bytes - given);
        if (!extent) continue;
        share.extents.push_back({static_cast<unsigned>(index), extent->offset, extent->bytes});
        given += extent->bytes;
        progress = true;
      }
      if (!progress) break;
    }
  } catch (...) {
  }
  if (given < bytes) {
    for (const auto& extent : share.extents) tiers_[extent.tier].allocator->release(extent.offset, extent.bytes);
    share.extents.clear();
    unreserve(bytes);
    return Status::error(ENOMEM, "the second tier has no free space for a forked process's copy of the memory");
  }
  share.bytes = bytes;
  for (const auto& extent : share.extents) tiers_[extent.tier].tier->forget(extent.offset, extent.bytes);
  return Status::ok();
}

void Pool::end_child(const ChildShare& share) noexcept {
  for (const auto& extent : share.extents) tiers_[extent.tier].allocator->release(extent.offset, extent.bytes);
  if (share.bytes) unreserve(share.bytes);
  end_child(share.id);
}

std::unique_ptr<Pool> Pool::continue_in_child(ChildShare& share, std::vector<std::unique_ptr<Tier>> overflow) {
  std::unique_ptr<Pool> child(new Pool());
  for (size_t index = 0; index < tiers_.size(); ++index) {
    std::unique_ptr<Tier::ChildPreparation> preparation;
    if (index < share.preparations.size()) preparation = std::move(share.preparations[index]);
    Member member;
    member.tier = tiers_[index].tier->continue_in_child(std::move(preparation));
    member.allocator = std::make_unique<BuddyAllocator>(member.tier->capacity(), BuddyAllocator::Start::kNoneFree);
    member.whole = false;
    child->tiers_.push_back(std::move(member));
  }
  for (const auto& extent : share.extents) {
    Member& member = child->tiers_[extent.tier];
    member.allocator->release(extent.offset, extent.bytes);
    member.owned.push_back(extent);
    child->capacity_ += extent.bytes;
  }
  for (auto& member : child->tiers_)
    std::sort(member.owned.begin(), member.owned.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
  child->overflow_ = child->tiers_.size();
  for (auto& tier : overflow) {
    if (child->tiers_.size() >= Slot::kMaxTiers) break;  // deep fork chains: the share only
    auto allocator = std::make_unique<BuddyAllocator>(tier->capacity());
    child->capacity_ += allocator->free_bytes();
    child->tiers_.push_back(Member{std::move(tier), std::move(allocator), {}, true});
  }
  return child;
}

uint64_t Pool::begin_child() noexcept {
  std::lock_guard lock(fork_mutex_);
  uint64_t id = ++fork_clock_;
  live_children_[id] = id;
  return id;
}

void Pool::end_child(uint64_t id) noexcept {
  std::vector<Deferred> now_free;
  {
    std::lock_guard lock(fork_mutex_);
    live_children_.erase(id);
    uint64_t oldest = live_children_.empty() ? ~0ULL : live_children_.begin()->second;
    // A slot let go of at clock T may be read by the children forked at or before T.
    auto keep = std::partition(deferred_.begin(), deferred_.end(), [&](const Deferred& d) { return d.dropped_at >= oldest; });
    now_free.assign(keep, deferred_.end());
    deferred_.erase(keep, deferred_.end());
  }
  for (const Deferred& d : now_free) release(d.slot, d.bytes);
}

void Pool::release_shared(Slot slot, uint64_t bytes) noexcept {
  if (!slot.valid()) return;
  {
    std::lock_guard lock(fork_mutex_);
    if (!live_children_.empty()) {
      try {
        deferred_.push_back(Deferred{slot, bytes, fork_clock_});
        return;
      } catch (...) {
        return;  // no memory for the note: the slot stays allocated (never reused while shared)
      }
    }
  }
  release(slot, bytes);
}

bool Pool::transfer(std::span<const SlotSpan> spans, bool is_write, void* context,
                    FailureCallback on_failure) noexcept {
  bool all_ok = true;
  // Callers stay within kMaxSpans; a longer array is done kMaxSpans at a time.
  for (size_t base = 0; base < spans.size(); base += kMaxSpans) {
    const size_t count = std::min(spans.size() - base, kMaxSpans);
    bool grouped[kMaxSpans];
    std::fill_n(grouped, count, false);
    for (size_t head = 0; head < count; ++head) {
      if (grouped[head]) continue;
      const unsigned tier_index = spans[base + head].slot.tier();
      IoSpan batch[kMaxSpans];
      size_t positions[kMaxSpans];
      size_t n = 0;
      for (size_t j = head; j < count; ++j) {
        const SlotSpan& span = spans[base + j];
        if (grouped[j] || span.slot.tier() != tier_index) continue;
        grouped[j] = true;
        batch[n] = IoSpan{span.slot.offset() + span.offset, span.buffer, span.length};
        positions[n++] = base + j;
      }
      Tier& tier = *tiers_[tier_index].tier;
      Status status = is_write ? tier.write_batch({batch, n}) : tier.read_batch({batch, n});
      if (status) continue;
      all_ok = false;
      on_failure(context, FailedBatch{tier.name(), {positions, n}, status});
      if (!is_write) return false;
    }
  }
  return all_ok;
}

Status Pool::register_buffer(void* base, size_t length) noexcept {
  for (auto& member : tiers_) {
    Status status = member.tier->register_buffer(base, length);
    if (!status) return status;
  }
  return Status::ok();
}

}  // namespace emp::tier
