// Mapping: RAII owner of an anonymous private mapping made with raw syscalls (so the
// preload interposer never sees it). Used for staging buffers, the in-memory tier and
// regions the engine creates itself. Not thread-safe as an object; the memory is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "common/status.h"

namespace emp::os {

class Mapping {
 public:
  Mapping() noexcept = default;
  // Reserves `length` bytes aligned to `alignment` (a power of two ≥ 4 KiB).
  static Result<Mapping> anonymous(size_t length, size_t alignment = 4096, bool populate = false) noexcept;
  Mapping(Mapping&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }
  size_t size() const noexcept { return length_; }
  uintptr_t address() const noexcept { return reinterpret_cast<uintptr_t>(base_); }
  void reset() noexcept;
  // Gives up ownership (the caller unmaps).
  // Unmaps memory a released Mapping owned (the way its destructor would).
  static void unmap(void* base, size_t length) noexcept;
  void* release() noexcept {
    length_ = 0;
    return std::exchange(base_, nullptr);
  }

 private:
  Mapping(void* base, size_t length) noexcept : base_(base), length_(length) {}
  void* base_ = nullptr;
  size_t length_ = 0;
};

}  // namespace emp::os
