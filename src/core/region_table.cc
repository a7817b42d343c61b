#include "core/region_table.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace emp::core {

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
  next->insert(it, std::move(region));
  regions_ = std::move(next);
  ++generation_;
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
  ++generation_;
  return region;
}

RegionTable::Snapshot RegionTable::snapshot() const noexcept {
  std::shared_lock lock(mutex_);
  return regions_;
}

uint64_t RegionTable::generation() const noexcept {
  std::shared_lock lock(mutex_);
  return generation_;
}

}  // namespace emp::core
