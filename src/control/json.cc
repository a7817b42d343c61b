#include "control/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace emp::control {

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof escape, "\\u%04x", c);
          out += escape;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

std::string json_quote(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  bool parse_document(JsonValue& out) {
    if (!parse_value(out, 0)) return false;
    skip_space();
    return pos_ == text_.size();
  }

 private:
  static constexpr int kMaxDepth = 32;

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool parse_value(JsonValue& out, int depth) {
    if (depth > kMaxDepth) return false;
    skip_space();
    if (pos_ >= text_.size()) return false;
    char c = text_[pos_];
    if (c == '{') return parse_object(out, depth);
    if (c == '[') return parse_array(out, depth);
    if (c == '"') {
      out.type_ = JsonValue::Type::kString;
      return parse_string(out.string_);
    }
    if (consume("true")) {
      out.type_ = JsonValue::Type::kBool;
      out.bool_ = true;
      return true;
    }
    if (consume("false")) {
      out.type_ = JsonValue::Type::kBool;
      return true;
    }
    if (consume("null")) return true;
    return parse_number(out);
  }

  bool parse_object(JsonValue& out, int depth) {
    out.type_ = JsonValue::Type::kObject;
    ++pos_;
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '}') return ++pos_, true;
    for (;;) {
      skip_space();
      std::string key;
      if (pos_ >= text_.size() || text_[pos_] != '"' || !parse_string(key)) return false;
      skip_space();
      if (pos_ >= text_.size() || text_[pos_++] != ':') return false;
      JsonValue value;
      if (!parse_value(value, depth + 1)) return false;
      out.members_.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (pos_ >= text_.size()) return false;
      char c = text_[pos_++];
      if (c == '}') return true;
      if (c != ',') return false;
    }
  }

  bool parse_array(JsonValue& out, int depth) {
    out.type_ = JsonValue::Type::kArray;
    ++pos_;
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == ']') return ++pos_, true;
    for (;;) {
      JsonValue value;
      if (!parse_value(value, depth + 1)) return false;
      out.items_.push_back(std::move(value));
      skip_space();
      if (pos_ >= text_.size()) return false;
      char c = text_[pos_++];
      if (c == ']') return true;
      if (c != ',') return false;
    }
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  bool parse_string(std::string& out) {
    ++pos_;  // opening quote
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) return false;
      char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (pos_ + 4 > text_.size()) return false;
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            char h = text_[pos_++];
            code <<= 4;
            if (h >= '0' && h <= '9') code |= h - '0';
            else if (h >= 'a' && h <= 'f') code |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') code |= h - 'A' + 10;
            else return false;
          }
          append_utf8(out, code);  // surrogate pairs are kept as two code units
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  bool parse_number(JsonValue& out) {
    size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    bool integral = true;
    size_t digits = 0;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        ++digits;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
      } else {
        break;
      }
      ++pos_;
    }
    if (digits == 0) return false;
    std::string number(text_.substr(start, pos_ - start));
    char* end = nullptr;
    out.number_ = std::strtod(number.c_str(), &end);
    if (!end || *end != '\0' || !std::isfinite(out.number_)) return false;
    out.type_ = JsonValue::Type::kNumber;
    if (integral && number[0] != '-') {
      errno = 0;
      unsigned long long value = std::strtoull(number.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') out.integer_ = value;
    }
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

std::optional<JsonValue> JsonValue::parse(std::string_view text) noexcept {
  try {
    JsonValue value;
    JsonParser parser(text);
    if (!parser.parse_document(value)) return std::nullopt;
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
