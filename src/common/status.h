// Status and Result: the error currency of the fault path, tiers and transports.
//
// A Status is an errno value plus a static, human-readable context string; it never
// allocates and never throws, so it is safe inside fault handlers and the preload
// library. Result<T> carries either a value or a failed Status. Setup code that may
// throw converts a failed Status with throw_if_error().
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace emp {

class [[nodiscard]] Status {
 public:
  constexpr Status() noexcept = default;
  static constexpr Status ok() noexcept { return Status(); }
  static constexpr Status error(int code, const char* context) noexcept {
    return Status(code == 0 ? EIO : code, context);
  }
  // Captures the current errno.
  static Status from_errno(const char* context) noexcept { return error(errno, context); }

  constexpr bool is_ok() const noexcept { return code_ == 0; }
  constexpr explicit operator bool() const noexcept { return is_ok(); }
  constexpr int code() const noexcept { return code_; }
  constexpr const char* context() const noexcept { return context_; }
  std::string to_string() const {
    if (is_ok()) return "ok";
    return std::string(context_ ? context_ : "error") + ": " + std::strerror(code_);
  }

 private:
  constexpr Status(int code, const char* context) noexcept : code_(code), context_(context) {}
  int code_ = 0;
  const char* context_ = nullptr;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit
      : value_(std::move(value)) {}
  Result(Status status) noexcept : status_(status) {}  // NOLINT: implicit

  bool is_ok() const noexcept { return status_.is_ok(); }
  explicit operator bool() const noexcept { return is_ok(); }
  const Status& status() const noexcept { return status_; }
  T& value() noexcept { return value_; }
  const T& value() const noexcept { return value_; }
  T* operator->() noexcept { return &value_; }
  T& operator*() noexcept { return value_; }

 private:
  T value_{};
  Status status_{};
};

// Setup zone only: turns a failed Status into std::system_error.
inline void throw_if_error(const Status& status) {
  if (!status.is_ok()) throw std::system_error(status.code(), std::generic_category(), status.context());
}

}  // namespace emp
