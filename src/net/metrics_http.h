// Prometheus text over HTTP: answers one scrape on an accepted connection (vmd
// --metrics, `emp metrics --listen`). The request is read (up to 2 KiB, 200 ms) and not
// parsed: every path gets the metrics, as node_exporter's textfile collector would.
#pragma once

#include <string>

namespace emp::net {

// Sends `body` (Prometheus text format 0.0.4) as an HTTP/1.0 response and returns; the
// caller closes the connection. Never blocks for more than ~400 ms.
void answer_metrics_request(int fd, const std::string& body) noexcept;

}  // namespace emp::net
