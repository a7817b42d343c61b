#include "cli/process_query.h"

#include <unistd.h>

#include <cstdlib>

#include "control/control_client.h"
#include "control/socket_location.h"

namespace emp::cli {

std::vector<ProcessSample> query_all_processes() {
  std::vector<ProcessSample> samples;
  auto directories = control::candidate_directories(::geteuid(), std::getenv("XDG_RUNTIME_DIR"));
  for (const auto& entry : control::list_sockets(directories)) {
    try {
      auto client =
          control::ControlClient::connect_path(entry.path, entry.pid, std::chrono::milliseconds(2000));
      ProcessSample sample;
      sample.pid = entry.pid;
      sample.info = client.request("info");
      control::JsonValue reply = client.request("stats");
      const control::JsonValue* stats = reply.find("stats");
      if (!stats) continue;
      sample.stats = *stats;
      samples.push_back(std::move(sample));
    } catch (const control::ControlClientError&) {
    }
  }
  return samples;
}

}  // namespace emp::cli
