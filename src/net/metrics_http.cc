#include "net/metrics_http.h"

#include <sys/socket.h>
#include <sys/time.h>

#include "net/socket.h"

namespace emp::net {

void answer_metrics_request(int fd, const std::string& body) noexcept {
  timeval timeout{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char request[2048];
  (void)!::recv(fd, request, sizeof request, 0);
  try {
    std::string response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    (void)send_all(fd, {reinterpret_cast<const uint8_t*>(response.data()), response.size()},
                   deadline_after(std::chrono::milliseconds(200)));
  } catch (...) {
  }
}

}  // namespace emp::net
