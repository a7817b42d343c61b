#include "control/json.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace emp::control {

void append_json_string(std::string& out, std::string_view text) {
  // Invalid UTF-8 (a program name, a path) becomes U+FFFD rather than invalid JSON.
  out += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string json_quote(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

namespace {

using Document = nlohmann::ordered_json;  // keeps the members in the order they came
constexpr int kMaxDepth = 32;

bool convert(const Document& from, JsonValue& to, int depth);

}  // namespace

// Builds JsonValue trees from nlohmann's (the only class allowed to fill them in).
class JsonParser {
 public:
  static bool fill(const Document& from, JsonValue& to, int depth) {
    if (depth > kMaxDepth) return false;
    switch (from.type()) {
      case Document::value_t::null: to.type_ = JsonValue::Type::kNull; return true;
      case Document::value_t::boolean:
        to.type_ = JsonValue::Type::kBool;
        to.bool_ = from.get<bool>();
        return true;
      case Document::value_t::number_unsigned:
        to.type_ = JsonValue::Type::kNumber;
        to.integer_ = from.get<uint64_t>();
        to.number_ = static_cast<double>(*to.integer_);
        return true;
      case Document::value_t::number_integer:
        to.type_ = JsonValue::Type::kNumber;
        to.number_ = static_cast<double>(from.get<int64_t>());
        return true;
      case Document::value_t::number_float:
        to.type_ = JsonValue::Type::kNumber;
        to.number_ = from.get<double>();
        return true;
      case Document::value_t::string:
        to.type_ = JsonValue::Type::kString;
        to.string_ = from.get<std::string>();
        return true;
      case Document::value_t::array:
        to.type_ = JsonValue::Type::kArray;
        to.items_.resize(from.size());
        for (size_t i = 0; i < from.size(); ++i)
          if (!convert(from[i], to.items_[i], depth + 1)) return false;
        return true;
      case Document::value_t::object:
        to.type_ = JsonValue::Type::kObject;
        to.members_.reserve(from.size());
        for (const auto& [key, value] : from.items()) {
          to.members_.emplace_back(key, JsonValue{});
          if (!convert(value, to.members_.back().second, depth + 1)) return false;
        }
        return true;
      default: return false;  // binary values and discarded parses
    }
  }
};

namespace {

bool convert(const Document& from, JsonValue& to, int depth) { return JsonParser::fill(from, to, depth); }

}  // namespace

std::optional<JsonValue> JsonValue::parse(std::string_view text) noexcept {
  try {
    bool too_deep = false;
    Document::parser_callback_t limit = [&](int depth, Document::parse_event_t, Document&) {
      if (depth > kMaxDepth) too_deep = true;
      return !too_deep;
    };
    Document document = Document::parse(text, limit, /*allow_exceptions=*/false);
    if (too_deep || document.is_discarded()) return std::nullopt;
    JsonValue value;
    if (!convert(document, value, 0)) return std::nullopt;
    return value;
  } catch (...) {  // std::bad_alloc
    return std::nullopt;
  }
}

const JsonValue* JsonValue::find(std::string_view key) const noexcept {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& [name, value] : members_)
    if (name == key) return &value;
  return nullptr;
}

uint64_t JsonValue::as_u64() const noexcept {
  if (integer_) return *integer_;
  if (number_ <= 0 || !std::isfinite(number_)) return 0;
  if (number_ >= 18446744073709551615.0) return UINT64_MAX;
  return static_cast<uint64_t>(number_);
}

uint64_t JsonValue::u64(std::string_view key, uint64_t fallback) const noexcept {
  const JsonValue* v = find(key);
  return v && v->is_number() ? v->as_u64() : fallback;
}

double JsonValue::number(std::string_view key, double fallback) const noexcept {
  const JsonValue* v = find(key);
  return v && v->is_number() ? v->as_number() : fallback;
}

std::string JsonValue::str(std::string_view key, std::string_view fallback) const {
  const JsonValue* v = find(key);
  return v && v->is_string() ? v->as_string() : std::string(fallback);
}

bool JsonValue::boolean(std::string_view key, bool fallback) const noexcept {
  const JsonValue* v = find(key);
  return v && v->type() == Type::kBool ? v->as_bool() : fallback;
}

}  // namespace emp::control
