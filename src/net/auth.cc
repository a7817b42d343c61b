#include "net/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/log.h"

namespace emp::net {

Mac auth_mac(std::string_view key, std::string_view label, std::span<const uint8_t> a, std::span<const uint8_t> b) {
  std::string message(label);
  message.append(reinterpret_cast<const char*>(a.data()), a.size());
  message.append(reinterpret_cast<const char*>(b.data()), b.size());
  Mac mac{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac.data(), &length);
  return mac;
}

void random_bytes(std::span<uint8_t> out) noexcept {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      EMP_ERROR("net", "getrandom failed: %s", std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
}

uint64_t random_u64() noexcept {
  uint64_t value = 0;
  random_bytes({reinterpret_cast<uint8_t*>(&value), sizeof value});
  return value;
}

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

std::string read_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("auth key file '" + path + "': cannot open: " + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string key = buffer.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ' || key.back() == '\t'))
    key.pop_back();
  if (key.empty()) throw std::runtime_error("auth key file '" + path + "' is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    EMP_WARN("net", "auth key file '%s' is readable by group or others (chmod 600 it)", path.c_str());
  return key;
}

}  // namespace emp::net
