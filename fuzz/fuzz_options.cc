// Fuzz target: the option table read from the environment — every line of the input
// is one `NAME=value` entry of envp. Options must load or throw OptionError (naming the
// bad variable) or MemPathError (naming the bad element); unknown EMP_* names only warn.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size() && lines.size() < 64) {
    size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::vector<const char*> envp;
  for (const auto& line : lines) envp.push_back(line.c_str());  // embedded NULs end an entry early, as in a real environ
  envp.push_back(nullptr);
  std::vector<std::string> warnings;
  try {
    emp::Options options = emp::options_from_environment(envp.data(), &warnings);
    (void)options;
  } catch (const emp::OptionError&) {
  } catch (const emp::MemPathError&) {
  }
  return 0;
}
