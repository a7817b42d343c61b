#include "core/region_table.h"

#include <mutex>
#include <stdexcept>
#include <utility>

namespace emp::core {
namespace {

using Node = RegionSet::Node;
using NodePtr = RegionSet::NodePtr;

uint64_t priority_of(uintptr_t base) noexcept {
  uint64_t x = base * 0x9e3779b97f4a7c15ULL;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  return x ^ (x >> 29);
}

NodePtr make_node(std::shared_ptr<Region> region, NodePtr left, NodePtr right, uint64_t priority) {
  size_t count = 1 + (left ? left->count : 0) + (right ? right->count : 0);
  uint64_t blocks = region->block_count() + (left ? left->blocks : 0) + (right ? right->blocks : 0);
  return std::make_shared<const Node>(Node{std::move(region), std::move(left), std::move(right), priority, count, blocks});
}

// (regions with base < key, the rest), copying only the nodes on the search path.
std::pair<NodePtr, NodePtr> split(const NodePtr& node, uintptr_t key) {
  if (!node) return {nullptr, nullptr};
  if (node->region->base() < key) {
    auto [low, high] = split(node->right, key);
    return {make_node(node->region, node->left, std::move(low), node->priority), std::move(high)};
  }
  auto [low, high] = split(node->left, key);
  return {std::move(low), make_node(node->region, std::move(high), node->right, node->priority)};
}

// Every base in `low` is below every base in `high`.
NodePtr merge(const NodePtr& low, const NodePtr& high) {
  if (!low) return high;
  if (!high) return low;
  if (low->priority > high->priority) return make_node(low->region, low->left, merge(low->right, high), low->priority);
  return make_node(high->region, merge(low, high->left), high->right, high->priority);
}

void collect(const Node* node, uintptr_t start, uintptr_t end, std::vector<std::shared_ptr<Region>>& out) {
  if (!node) return;
  const Region& region = *node->region;
  if (region.base() >= end) return collect(node->left.get(), start, end, out);
  if (region.end() <= start) return collect(node->right.get(), start, end, out);
  collect(node->left.get(), start, end, out);
  out.push_back(node->region);
  collect(node->right.get(), start, end, out);
}

}  // namespace

const std::shared_ptr<Region>* RegionSet::find_shared(uintptr_t address) const noexcept {
  const Node* node = root_.get();
  while (node) {
    const Region& region = *node->region;
    if (address < region.base()) {
      node = node->left.get();
    } else if (address >= region.end()) {
      node = node->right.get();
    } else {
      return &node->region;
    }
  }
  return nullptr;
}

Region* RegionSet::find(uintptr_t address) const noexcept {
  const std::shared_ptr<Region>* found = find_shared(address);
  return found ? found->get() : nullptr;
}

const std::shared_ptr<Region>& RegionSet::operator[](size_t index) const noexcept {
  const Node* node = root_.get();
  while (true) {
    size_t left = node->left ? node->left->count : 0;
    if (index < left) {
      node = node->left.get();
    } else if (index == left) {
      return node->region;
    } else {
      index -= left + 1;
      node = node->right.get();
    }
  }
}

std::vector<std::shared_ptr<Region>> RegionSet::overlapping(uintptr_t start, uintptr_t end) const {
  std::vector<std::shared_ptr<Region>> out;
  collect(root_.get(), start, end, out);
  return out;
}

RegionSet RegionSet::with(std::shared_ptr<Region> region) const {
  const uintptr_t base = region->base();
  auto [low, high] = split(root_, base);
  NodePtr single = make_node(std::move(region), nullptr, nullptr, priority_of(base));
  return RegionSet(merge(merge(low, single), high));
}

RegionSet RegionSet::without(uintptr_t base) const {
  auto [low, rest] = split(root_, base);
  auto [match, high] = split(rest, base + 1);
  (void)match;
  return RegionSet(merge(low, high));
}

RegionSet::Iterator::Iterator(const Node* root) { descend_left(root); }

void RegionSet::Iterator::descend_left(const Node* node) {
  for (; node; node = node->left.get()) path_.push_back(node);
}

RegionSet::Iterator& RegionSet::Iterator::operator++() {
  const Node* node = path_.back();
  path_.pop_back();
  descend_left(node->right.get());
  return *this;
}

std::shared_ptr<Region> RegionTable::find(uintptr_t address) const noexcept {
  std::shared_lock lock(mutex_);
  const std::shared_ptr<Region>* found = current_->find_shared(address);
  return found ? *found : nullptr;
}

void RegionTable::publish(RegionSet next) {
  current_ = std::make_shared<const RegionSet>(std::move(next));
  generation_.fetch_add(1, std::memory_order_release);
}

void RegionTable::insert(std::shared_ptr<Region> region) {
  std::unique_lock lock(mutex_);
  if (!current_->overlapping(region->base(), region->end()).empty())
    throw std::invalid_argument("memory range overlaps an EMP-managed region");
  const uint64_t length = region->length();
  publish(current_->with(std::move(region)));
  managed_bytes_.fetch_add(length, std::memory_order_relaxed);
}

std::shared_ptr<Region> RegionTable::remove(uintptr_t base) noexcept {
  std::unique_lock lock(mutex_);
  const std::shared_ptr<Region>* found = current_->find_shared(base);
  if (!found || (*found)->base() != base) return nullptr;
  std::shared_ptr<Region> region = *found;
  publish(current_->without(base));
  managed_bytes_.fetch_sub(region->length(), std::memory_order_relaxed);
  return region;
}

std::vector<std::shared_ptr<Region>> RegionTable::overlapping(uintptr_t start, uintptr_t end) const {
  std::shared_lock lock(mutex_);
  return current_->overlapping(start, end);
}

void RegionTable::replace(const std::shared_ptr<Region>& old_region, const std::vector<std::shared_ptr<Region>>& pieces) {
  std::unique_lock lock(mutex_);
  RegionSet next = current_->without(old_region->base());
  uint64_t kept = 0;
  for (const auto& piece : pieces) {
    next = next.with(piece);
    kept += piece->length();
  }
  publish(std::move(next));
  managed_bytes_.fetch_sub(old_region->length() - kept, std::memory_order_relaxed);
}

RegionTable::Snapshot RegionTable::snapshot() const noexcept {
  std::shared_lock lock(mutex_);
  return current_;
}

uint64_t RegionTable::generation() const noexcept { return generation_.load(std::memory_order_acquire); }

}  // namespace emp::core
