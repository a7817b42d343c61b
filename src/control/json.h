// JSON for the control plane, over nlohmann-json: string quoting for the control
// server's writer, and JsonValue, the read-only tree the `emp` CLI and the tests read
// replies with (members in their order, unsigned integers exact). Values are plain data
// (no shared state); everything here is thread-safe. parse() never throws: malformed or
// too deeply nested (over 32 levels) text yields std::nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace emp::control {

// Appends `text` as a quoted JSON string (control characters and quotes escaped).
void append_json_string(std::string& out, std::string_view text);
std::string json_quote(std::string_view text);

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  static std::optional<JsonValue> parse(std::string_view text) noexcept;

  Type type() const noexcept { return type_; }
  bool is_object() const noexcept { return type_ == Type::kObject; }
  bool is_array() const noexcept { return type_ == Type::kArray; }
  bool is_string() const noexcept { return type_ == Type::kString; }
  bool is_number() const noexcept { return type_ == Type::kNumber; }

  // Object member lookup; nullptr when absent or when this is not an object.
  const JsonValue* find(std::string_view key) const noexcept;
  bool has(std::string_view key) const noexcept { return find(key) != nullptr; }
  // Convenience accessors with fallbacks for absent or mistyped members.
  uint64_t u64(std::string_view key, uint64_t fallback = 0) const noexcept;
  double number(std::string_view key, double fallback = 0) const noexcept;
  std::string str(std::string_view key, std::string_view fallback = "") const;
  bool boolean(std::string_view key, bool fallback = false) const noexcept;

  bool as_bool() const noexcept { return bool_; }
  double as_number() const noexcept { return number_; }
  // Exact for non-negative integers up to 2^64 - 1; otherwise the rounded double.
  uint64_t as_u64() const noexcept;
  const std::string& as_string() const noexcept { return string_; }
  const std::vector<JsonValue>& items() const noexcept { return items_; }
  const std::vector<std::pair<std::string, JsonValue>>& members() const noexcept { return members_; }

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::optional<uint64_t> integer_;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<std::pair<std::string, JsonValue>> members_;
};

}  // namespace emp::control
