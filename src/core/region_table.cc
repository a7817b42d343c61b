#include "core/region_table.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace emp::core {

Region* RegionTable::find_in(const std::vector<std::shared_ptr<Region>>& regions, uintptr_t address) noexcept {
  auto it = std::upper_bound(regions.begin(), regions.end(), address,
                             [](uintptr_t a, const std::shared_ptr<Region>& r) { return a < r->base(); });
  if (it == regions.begin()) return nullptr;
  --it;
  return (*it)->contains(address) ? it->get() : nullptr;
}

std::shared_ptr<Region> RegionTable::find(uintptr_t address) const noexcept {
  std::shared_lock lock(mutex_);
  const auto& regions = *regions_;
  auto it = std::upper_bound(regions.begin(), regions.end(), address,
                             [](uintptr_t a, const std::shared_ptr<Region>& r) { return a < r->base(); });
  if (it == regions.begin()) return nullptr;
  --it;
  return (*it)->contains(address) ? *it : nullptr;
}

void RegionTable::insert(std::shared_ptr<Region> region) {
  std::unique_lock lock(mutex_);
  auto next = std::make_shared<std::vector<std::shared_ptr<Region>>>(*regions_);
  auto it = std::upper_bound(next->begin(), next->end(), region->base(),
                             [](uintptr_t a, const std::shared_ptr<Region>& r) { return a < r->base(); });
  if ((it != next->end() && (*it)->base() < region->end()) || (it != next->begin() && (*(it - 1))->end() > region->base()))
    throw std::invalid_argument("memory range overlaps an EMP-managed region");
  managed_bytes_.fetch_add(region->length(), std::memory_order_relaxed);
  next->insert(it, std::move(region));
  regions_ = std::move(next);
  generation_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<Region> RegionTable::remove(uintptr_t base) noexcept {
  std::unique_lock lock(mutex_);
  auto it = std::find_if(regions_->begin(), regions_->end(), [&](const auto& r) { return r->base() == base; });
  if (it == regions_->end()) return nullptr;
  std::shared_ptr<Region> region = *it;
  auto next = std::make_shared<std::vector<std::shared_ptr<Region>>>();
  next->reserve(regions_->size() - 1);
  for (const auto& r : *regions_)
    if (r != region) next->push_back(r);
  regions_ = std::move(next);
  generation_.fetch_add(1, std::memory_order_release);
  managed_bytes_.fetch_sub(region->length(), std::memory_order_relaxed);
  return region;
}

std::vector<std::shared_ptr<Region>> RegionTable::overlapping(uintptr_t start, uintptr_t end) const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<Region>> result;
  const auto& regions = *regions_;
  auto it = std::upper_bound(regions.begin(), regions.end(), start,
                             [](uintptr_t a, const std::shared_ptr<Region>& r) { return a < r->base(); });
  if (it != regions.begin() && (*(it - 1))->end() > start) --it;
  for (; it != regions.end() && (*it)->base() < end; ++it) result.push_back(*it);
  return result;
}

void RegionTable::replace(const std::shared_ptr<Region>& old_region, const std::vector<std::shared_ptr<Region>>& pieces) {
  std::unique_lock lock(mutex_);
  auto next = std::make_shared<std::vector<std::shared_ptr<Region>>>();
  next->reserve(regions_->size() + pieces.size());
  for (const auto& r : *regions_)
    if (r != old_region) next->push_back(r);
  for (const auto& piece : pieces) next->push_back(piece);
  uint64_t kept = 0;
  for (const auto& piece : pieces) kept += piece->length();
  managed_bytes_.fetch_sub(old_region->length() - kept, std::memory_order_relaxed);
  std::sort(next->begin(), next->end(), [](const auto& a, const auto& b) { return a->base() < b->base(); });
  regions_ = std::move(next);
  generation_.fetch_add(1, std::memory_order_release);
}

RegionTable::Snapshot RegionTable::snapshot() const noexcept {
  std::shared_lock lock(mutex_);
  return regions_;
}

uint64_t RegionTable::generation() const noexcept { return generation_.load(std::memory_order_acquire); }

}  // namespace emp::core
