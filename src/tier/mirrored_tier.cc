#include "tier/mirrored_tier.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "common/log.h"

namespace emp::tier {
namespace {

constexpr uint64_t kRebuildChunk = 1ULL << 20;  // bytes copied per rebuild step

bool test_bit(const std::atomic<uint64_t>* bits, uint64_t index) noexcept {
  return (bits[index / 64].load(std::memory_order_acquire) >> (index % 64)) & 1;
}

// The granules [first, end) a span touches.
std::pair<uint64_t, uint64_t> granules_of(const IoSpan& span) noexcept {
  return {span.offset / MirroredTier::kGranule, (span.offset + span.length + MirroredTier::kGranule - 1) / MirroredTier::kGranule};
}

uint64_t now_ns() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

std::string mirror_name(const std::vector<std::unique_ptr<Tier>>& copies) {
  std::string name = "mirror of";
  for (size_t i = 0; i < copies.size(); ++i) name += (i ? ", " : " ") + copies[i]->name();
  return name;
}

}  // namespace

std::unique_ptr<MirroredTier> MirroredTier::create(std::vector<std::unique_ptr<Tier>> copies) {
  if (copies.size() < 2) throw std::invalid_argument("a mirror needs at least two copies");
  uint64_t capacity = copies[0]->capacity();
  for (const auto& copy : copies) capacity = std::min(capacity, copy->capacity());
  std::unique_ptr<MirroredTier> tier(new MirroredTier(std::move(copies), capacity));
  tier->rebuilder_ = std::thread([raw = tier.get()] { raw->rebuild_loop(); });
  return tier;
}

MirroredTier::MirroredTier(std::vector<std::unique_ptr<Tier>> copies, uint64_t capacity)
    : Tier(mirror_name(copies), capacity), copies_(copies.size()) {
  granules_ = capacity / kGranule;
  const size_t words = (granules_ + 63) / 64;
  for (size_t i = 0; i < copies.size(); ++i) {
    copies_[i].tier = std::move(copies[i]);
    copies_[i].holds = std::make_unique<std::atomic<uint64_t>[]>(words);
    copies_[i].seen_epoch = copies_[i].tier->data_epoch();
    for (size_t w = 0; w < words; ++w) copies_[i].holds[w].store(0, std::memory_order_relaxed);
  }
  written_ = std::make_unique<std::atomic<uint64_t>[]>(words);
  for (size_t w = 0; w < words; ++w) written_[w].store(0, std::memory_order_relaxed);
}

namespace {
struct MirrorPreparation final : Tier::ChildPreparation {
  std::vector<std::unique_ptr<Tier::ChildPreparation>> copies;
  void abandon() noexcept override {
    for (auto& copy : copies)
      if (copy) copy->abandon();
  }
};
}  // namespace

std::unique_ptr<Tier::ChildPreparation> MirroredTier::prepare_child() noexcept {
  try {
    auto preparation = std::make_unique<MirrorPreparation>();
    for (auto& copy : copies_) preparation->copies.push_back(copy.tier->prepare_child());
    return preparation;
  } catch (...) {
    return nullptr;  // no memory: each copy reconnects on its own in the child
  }
}

std::unique_ptr<Tier> MirroredTier::continue_in_child(std::unique_ptr<ChildPreparation> preparation) {
  auto* prepared = dynamic_cast<MirrorPreparation*>(preparation.get());
  std::vector<std::unique_ptr<Tier>> children;
  for (size_t i = 0; i < copies_.size(); ++i)
    children.push_back(copies_[i].tier->continue_in_child(
        prepared && i < prepared->copies.size() ? std::move(prepared->copies[i]) : nullptr));
  std::unique_ptr<MirroredTier> child(new MirroredTier(std::move(children), capacity()));
  const size_t words = (granules_ + 63) / 64;
  for (size_t w = 0; w < words; ++w) {
    child->written_[w].store(written_[w].load(std::memory_order_relaxed), std::memory_order_relaxed);
    for (size_t i = 0; i < copies_.size(); ++i)
      child->copies_[i].holds[w].store(copies_[i].holds[w].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  for (size_t i = 0; i < copies_.size(); ++i) {
    child->copies_[i].read_ns.store(copies_[i].read_ns.load());
    child->copies_[i].seen_epoch = copies_[i].seen_epoch;
  }
  child->losses_.store(losses_.load());
  child->complete_at_.store(complete_at_.load());
  return child;
}

void MirroredTier::forget(uint64_t offset, uint64_t length) noexcept {
  if (length == 0) return;
  IoSpan span{offset, nullptr, static_cast<size_t>(length)};
  const uint64_t stripes = stripes_of({&span, 1});
  for (size_t stripe = 0; stripe < kStripes; ++stripe)
    if (stripes & (1ULL << stripe)) stripes_[stripe].lock();
  auto [first, end] = granules_of(span);
  mark_range(written_.get(), first, end - first, false);
  for (auto& copy : copies_) mark_range(copy.holds.get(), first, end - first, false);
  for (size_t stripe = 0; stripe < kStripes; ++stripe)
    if (stripes & (1ULL << stripe)) stripes_[stripe].unlock();
  for (auto& copy : copies_) copy.tier->forget(offset, length);
}

MirroredTier::~MirroredTier() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (rebuilder_.joinable()) rebuilder_.join();
}

Status MirroredTier::register_buffer(void* base, size_t length) noexcept {
  for (auto& copy : copies_) {
    Status status = copy.tier->register_buffer(base, length);
    if (!status) return status;
  }
  return Status::ok();
}

TierHealth MirroredTier::health() const noexcept {
  size_t live = 0;
  for (const auto& copy : copies_)
    if (copy.tier->health() != TierHealth::kLost) ++live;
  if (live == 0) return TierHealth::kLost;
  if (live < copies_.size() || complete_at_.load(std::memory_order_acquire) != losses_.load(std::memory_order_acquire))
    return TierHealth::kDegraded;
  for (const auto& copy : copies_)
    if (copy.tier->health() != TierHealth::kHealthy) return TierHealth::kDegraded;
  return TierHealth::kHealthy;
}

std::string MirroredTier::describe() const {
  std::string text = std::to_string(copies_.size()) + " copies (" + to_string(health());
  uint64_t degraded = degraded_bytes();
  if (degraded) text += ", " + std::to_string(degraded >> 20) + " MiB with fewer copies";
  text += ", " + std::to_string(rebuilt_bytes() >> 20) + " MiB rebuilt):";
  for (const auto& copy : copies_) text += " [" + copy.tier->describe() + "]";
  return text;
}

uint64_t MirroredTier::degraded_bytes() const noexcept {
  uint64_t degraded = 0;
  const size_t words = (granules_ + 63) / 64;
  for (size_t w = 0; w < words; ++w) {
    uint64_t written = written_[w].load(std::memory_order_relaxed);
    uint64_t all = written;
    for (const auto& copy : copies_)
      if (copy.tier->health() != TierHealth::kLost) all &= copy.holds[w].load(std::memory_order_relaxed);
    degraded += static_cast<uint64_t>(__builtin_popcountll(written & ~all));
  }
  return degraded * kGranule;
}

bool MirroredTier::holds(const Copy& copy, std::span<const IoSpan> spans) const noexcept {
  for (const auto& span : spans) {
    auto [first, end] = granules_of(span);
    for (uint64_t g = first; g < end; ++g)
      if (!test_bit(copy.holds.get(), g)) return false;
  }
  return true;
}

void MirroredTier::mark_range(std::atomic<uint64_t>* bits, uint64_t first, uint64_t count, bool held) noexcept {
  for (uint64_t g = first; g < first + count && g < granules_; ++g) {
    uint64_t bit = 1ULL << (g % 64);
    if (held) {
      bits[g / 64].fetch_or(bit, std::memory_order_release);
    } else {
      bits[g / 64].fetch_and(~bit, std::memory_order_release);
    }
  }
}

void MirroredTier::mark(std::atomic<uint64_t>* bits, std::span<const IoSpan> spans, bool held) noexcept {
  for (const auto& span : spans) {
    auto [first, end] = granules_of(span);
    mark_range(bits, first, end - first, held);
  }
}

void MirroredTier::lose(Copy& copy, std::span<const IoSpan> spans) noexcept {
  mark(copy.holds.get(), spans, false);
  losses_.fetch_add(1, std::memory_order_acq_rel);
}

uint64_t MirroredTier::stripes_of(std::span<const IoSpan> spans) noexcept {
  static_assert(kStripes == 64, "one bit per stripe");
  uint64_t stripes = 0;
  for (const auto& span : spans)
    for (uint64_t at = span.offset / kRebuildChunk; at <= (span.offset + span.length - 1) / kRebuildChunk; ++at)
      stripes |= 1ULL << (at % kStripes);
  return stripes;
}

Status MirroredTier::read_impl(std::span<const IoSpan> spans) noexcept {
  // Copies that hold every span, fastest first; then the others as a last resort.
  size_t order[4];
  size_t count = 0;
  for (size_t i = 0; i < copies_.size() && count < 4; ++i)
    if (copies_[i].tier->health() != TierHealth::kLost && holds(copies_[i], spans)) order[count++] = i;
  std::sort(order, order + count, [&](size_t a, size_t b) {
    return copies_[a].read_ns.load(std::memory_order_relaxed) < copies_[b].read_ns.load(std::memory_order_relaxed);
  });
  Status last = Status::error(EIO, "no copy of this data is left (every donor holding it is lost)");
  for (size_t k = 0; k < count; ++k) {
    Copy& copy = copies_[order[k]];
    uint64_t start = now_ns();
    Status status = copy.tier->read_batch(spans);
    if (status) {
      uint64_t took = now_ns() - start;
      uint64_t average = copy.read_ns.load(std::memory_order_relaxed);
      copy.read_ns.store(average ? average - average / 8 + took / 8 : took, std::memory_order_relaxed);
      return status;
    }
    EMP_LOG_LIMITED(::emp::log::Level::kWarn, "mirror", "reading %s failed (%s); reading another copy", copy.tier->name().c_str(),
                     status.to_string().c_str());
    copy.read_ns.store(~0ULL >> 2, std::memory_order_relaxed);  // try it last until it answers again
    last = status;
  }
  return last;
}

Status MirroredTier::write_impl(std::span<const IoSpan> spans) noexcept {
  const uint64_t stripes = stripes_of(spans);  // locked in stripe order
  for (size_t stripe = 0; stripe < kStripes; ++stripe)
    if (stripes >> stripe & 1) stripes_[stripe].lock_shared();
  size_t written = 0;
  Status last = Status::error(EIO, "every copy is lost");
  for (auto& copy : copies_) {
    if (copy.tier->health() == TierHealth::kLost) {
      lose(copy, spans);
      continue;
    }
    Status status = copy.tier->write_batch(spans);
    if (status) {
      mark(copy.holds.get(), spans, true);
      ++written;
    } else {
      lose(copy, spans);
      last = status;
      EMP_LOG_LIMITED(::emp::log::Level::kWarn, "mirror", "writing %s failed (%s); the data is kept on the other copies and rebuilt later",
                       copy.tier->name().c_str(), status.to_string().c_str());
    }
  }
  if (written) mark(written_.get(), spans, true);
  for (size_t stripe = 0; stripe < kStripes; ++stripe)
    if (stripes >> stripe & 1) stripes_[stripe].unlock_shared();
  return written ? Status::ok() : last;
}

MirroredTier::RebuildStep MirroredTier::rebuild_one_chunk() noexcept {
  // A copy that lost its data (a restarted donor's fresh lease) holds nothing any more.
  for (auto& copy : copies_) {
    uint64_t epoch = copy.tier->data_epoch();
    if (epoch != copy.seen_epoch) {
      copy.seen_epoch = epoch;
      mark_range(copy.holds.get(), 0, granules_, false);
      losses_.fetch_add(1, std::memory_order_acq_rel);
      EMP_WARN("mirror", "%s lost its data; rebuilding it from the other copies", copy.tier->name().c_str());
    }
  }
  const uint64_t granules_per_chunk = kRebuildChunk / kGranule;
  const uint64_t chunks = (granules_ + granules_per_chunk - 1) / granules_per_chunk;
  bool missing = false;  // something is (or may be) missing that this pass could not copy
  for (uint64_t step = 0; step < chunks; ++step) {
    uint64_t chunk = (rebuild_cursor_ + step) % chunks;
    uint64_t first = chunk * granules_per_chunk;
    uint64_t last = std::min(granules_, first + granules_per_chunk);
    for (size_t target = 0; target < copies_.size(); ++target) {
      Copy& to = copies_[target];
      if (to.tier->health() != TierHealth::kHealthy) {  // a donor still reconnecting waits
        missing = true;
        continue;
      }
      // The first granule of this chunk that was written and that `to` lacks.
      uint64_t g = first;
      while (g < last && !(test_bit(written_.get(), g) && !test_bit(to.holds.get(), g))) ++g;
      if (g == last) continue;
      missing = true;
      uint64_t end = g;
      while (end < last && test_bit(written_.get(), end) && !test_bit(to.holds.get(), end)) ++end;
      std::unique_lock stripe(stripes_[chunk % kStripes]);  // no write of these granules meanwhile
      for (size_t source = 0; source < copies_.size(); ++source) {
        Copy& from = copies_[source];
        if (source == target || from.tier->health() == TierHealth::kLost) continue;
        bool has_all = true;
        for (uint64_t k = g; k < end && has_all; ++k) has_all = test_bit(from.holds.get(), k);
        if (!has_all) continue;
        std::vector<char> buffer((end - g) * kGranule);
        IoSpan span{g * kGranule, buffer.data(), buffer.size()};
        if (!from.tier->read_batch({&span, 1})) continue;
        if (!to.tier->write_batch({&span, 1})) break;
        mark_range(to.holds.get(), g, end - g, true);
        rebuilt_bytes_.fetch_add(buffer.size(), std::memory_order_relaxed);
        rebuild_cursor_ = chunk;
        return RebuildStep::kCopied;
      }
    }
  }
  return missing ? RebuildStep::kStuck : RebuildStep::kNothingMissing;
}

void MirroredTier::rebuild_loop() noexcept {
  pthread_setname_np(pthread_self(), "emp-rebuild");
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    lock.unlock();
    const uint64_t losses = losses_.load(std::memory_order_acquire);
    RebuildStep step = RebuildStep::kStuck;
    try {
      step = rebuild_one_chunk();
    } catch (...) {
    }
    // A whole pass found every copy complete: healthy again, unless a loss came since.
    if (step == RebuildStep::kNothingMissing) complete_at_.store(losses, std::memory_order_release);
    const bool copied = step == RebuildStep::kCopied;
    lock.lock();
    // Throttled: one chunk per kRebuildChunk / kRebuildBytesPerSecond; idle checks
    // every 100 ms.
    auto pause = copied ? std::chrono::microseconds(kRebuildChunk * 1000000 / kRebuildBytesPerSecond)
                        : std::chrono::microseconds(100000);
    stop_cv_.wait_for(lock, pause, [&] { return stopping_; });
  }
}

}  // namespace emp::tier
