#include "common/size_parse.h"

#include <cctype>
#include <cstdio>

namespace emp {

std::optional<uint64_t> parse_uint(std::string_view text) noexcept {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

std::optional<uint64_t> parse_size(std::string_view text, uint64_t default_unit) noexcept {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  auto number = parse_uint(text.substr(0, digits));
  if (!number) return std::nullopt;
  std::string_view suffix = text.substr(digits);
  uint64_t unit = default_unit;
  if (!suffix.empty()) {
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    switch (c) {
      case 'B': unit = 1; break;
      case 'K': unit = 1ULL << 10; break;
      case 'M': unit = 1ULL << 20; break;
      case 'G': unit = 1ULL << 30; break;
      case 'T': unit = 1ULL << 40; break;
      default: return std::nullopt;
    }
    std::string_view rest = suffix.substr(1);
    if (c != 'B' && !(rest.empty() || rest == "B" || rest == "iB" || rest == "ib" || rest == "b"))
      return std::nullopt;
    if (c == 'B' && !rest.empty()) return std::nullopt;
  }
  if (*number != 0 && unit > UINT64_MAX / *number) return std::nullopt;
  return *number * unit;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char buffer[32];
  if (unit == 0 || value == static_cast<double>(static_cast<uint64_t>(value)))
    std::snprintf(buffer, sizeof buffer, "%.0f %s", value, kUnits[unit]);
  else
    std::snprintf(buffer, sizeof buffer, "%.1f %s", value, kUnits[unit]);
  return buffer;
}

bool is_power_of_two(uint64_t value) noexcept { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace emp
