#include "common/mem_path.h"

#include <cctype>

#include "common/size_parse.h"

namespace emp {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

[[noreturn]] void fail(std::string_view element, std::string_view reason) {
  throw MemPathError("memory path element '" + std::string(element) + "': " + std::string(reason));
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n'))
    text.remove_suffix(1);
  return text;
}

std::string_view strip_quotes(std::string_view text) {
  text = trim(text);
  while (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') && text.back() == text.front())
    text = trim(text.substr(1, text.size() - 2));
  return text;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = text.find(separator, start);
    parts.push_back(text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

uint64_t parse_mib(std::string_view element, std::string_view field, const char* what, bool allow_zero) {
  auto value = parse_size(field, kMiB);
  if (!value) fail(element, std::string("bad ") + what + " '" + std::string(field) + "' (expected MiB, e.g. 4096, or a size like 4G)");
  if (!allow_zero && *value == 0) fail(element, std::string(what) + " must not be 0");
  return *value;
}

TierSpec parse_tier(std::string_view element) {
  TierSpec spec;
  spec.element = std::string(element);
  if (element.front() == '/') {
    // /path:MiB:offset — the path itself may not contain ':'.
    auto fields = split(element, ':');
    if (fields.size() != 3) fail(element, "expected /path:<MiB>:<offset MiB>");
    spec.location = std::string(fields[0]);
    // /dev/shm holds ordinary (tmpfs) files, created on demand like any other file.
    bool under_dev = spec.location.rfind("/dev/", 0) == 0 && spec.location.rfind("/dev/shm/", 0) != 0;
    spec.kind = under_dev ? TierSpec::Kind::kDevice : TierSpec::Kind::kFile;
    spec.size_bytes = parse_mib(element, fields[1], "size", false);
    spec.offset_bytes = parse_mib(element, fields[2], "offset", true);
    return spec;
  }
  spec.kind = TierSpec::Kind::kRemote;
  std::string_view rest;
  if (element.front() == '[') {
    size_t close = element.find(']');
    if (close == std::string_view::npos || close + 1 >= element.size() || element[close + 1] != ':')
      fail(element, "expected [IPv6]:<MiB>:<port>");
    spec.location = std::string(element.substr(1, close - 1));
    rest = element.substr(close + 2);
  } else {
    size_t colon = element.find(':');
    if (colon == std::string_view::npos) fail(element, "unknown element (expected dram:<MiB>, <host>:<MiB>:<port>, /dev/<dev>:<MiB>:<offset> or /<file>:<MiB>:<offset>)");
    spec.location = std::string(element.substr(0, colon));
    rest = element.substr(colon + 1);
  }
  if (spec.location.empty()) fail(element, "empty host");
  for (char c : spec.location) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':' || c == '%';
    if (!ok) fail(element, "bad host name '" + spec.location + "'");
  }
  auto fields = split(rest, ':');
  if (fields.size() != 2) fail(element, "expected <host>:<MiB>:<port>");
  spec.size_bytes = parse_mib(element, fields[0], "size", false);
  auto port = parse_uint(fields[1]);
  if (!port || *port > 65535) fail(element, "bad port '" + std::string(fields[1]) + "' (0..65535, 0 = 19675)");
  spec.port = *port == 0 ? kDefaultVmdPort : static_cast<uint16_t>(*port);
  return spec;
}

}  // namespace

std::string TierSpec::describe() const {
  switch (kind) {
    case Kind::kRemote: return "remote " + location + ":" + std::to_string(port);
    case Kind::kDevice: return "device " + location;
    case Kind::kFile: return "file " + location;
  }
  return element;
}

uint64_t MemPath::pool_bytes() const noexcept {
  uint64_t total = 0;
  for (const auto& tier : tiers) total += tier.size_bytes;
  return total;
}

MemPath parse_mem_path(std::string_view text) {
  text = strip_quotes(text);
  if (text.empty()) throw MemPathError("memory path is empty (example: \"dram:1024|/var/tmp/emp.tier:4096:0\")");
  MemPath path;
  for (std::string_view raw : split(text, '|')) {
    std::string_view element = strip_quotes(raw);
    if (element.empty()) throw MemPathError("memory path '" + std::string(text) + "' has an empty element");
    if (element.rfind("dram:", 0) == 0 || element == "dram") {
      std::string_view value = element.size() > 5 ? element.substr(5) : std::string_view{};
      if (value == "auto" || value == "-1") {
        path.dram_auto = true;
        path.dram_bytes.reset();
      } else {
        path.dram_bytes = parse_mib(element, value, "DRAM size", false);
        path.dram_auto = false;
      }
      continue;
    }
    path.tiers.push_back(parse_tier(element));
  }
  return path;
}

std::vector<TierSpec> parse_tier_list(std::string_view text) {
  MemPath path = parse_mem_path(text);
  if (path.dram_bytes || path.dram_auto) throw MemPathError("tier list '" + std::string(text) + "' must not contain a dram: element");
  return path.tiers;
}

}  // namespace emp
