// Parsing of human sizes and numbers ("4K", "2M", "16384", "25%") used by the option
// table, the memory path and every command line. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace emp {

// Parses a byte size with an optional K/M/G/T suffix (binary units, optional "iB"/"B").
// A bare number is multiplied by default_unit (1 for bytes, 1 MiB for memory-path sizes).
std::optional<uint64_t> parse_size(std::string_view text, uint64_t default_unit = 1) noexcept;
// Parses a plain unsigned decimal integer.
std::optional<uint64_t> parse_uint(std::string_view text) noexcept;
// "1.5G" style formatting for messages and tables.
std::string format_size(uint64_t bytes);
bool is_power_of_two(uint64_t value) noexcept;

}  // namespace emp
