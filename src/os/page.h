// The page size EMP assumes (x86-64 and arm64 base pages) and rounding helpers: the one
// page-size constant of the project; everything else derives from it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emp::os {

inline constexpr size_t kPageSize = 4096;

constexpr uintptr_t page_floor(uintptr_t address) noexcept { return address & ~uintptr_t{kPageSize - 1}; }
constexpr size_t page_ceil(size_t length) noexcept { return (length + kPageSize - 1) & ~(kPageSize - 1); }

}  // namespace emp::os
