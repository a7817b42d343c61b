// Exporter: the donor (vmd) side of the libfabric data plane. It owns the provider
// domain given by `-d` (verbs on an RDMA device; emp-transport-bench also runs it with
// libfabric's tcp provider, as a candidate) with a passive endpoint accepting data
// connections. Exported memory (one registration per lease, with a random key) is
// reachable only through the key handed to that lease's client.
//
// Threads: the owner (vmd's main loop) calls everything except the progress thread's
// work; the Exporter runs one internal thread ("vmd-progress") that reads the servers'
// completion queues (the tcp provider needs the target to progress), sleeping in
// fi_trywait + poll — never spinning. Data connections are tied to a session cookie so
// vmd can drop them when the session ends.
#pragma once

#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "net/fabric.h"

namespace emp::net {

struct ExporterConfig {
  Provider provider = Provider::kTcp;  // tcp or verbs
  std::string device;                  // verbs device name
  std::string bind_address;            // "" = any (verbs needs a concrete address)
  // After the target side saw activity it keeps progressing for this long before it
  // sleeps again (catches back-to-back requests without a wake-up each).
  std::chrono::microseconds spin{20};
};

class Exporter {
 public:
  static std::unique_ptr<Exporter> open(const ExporterConfig& config);  // throws
  ~Exporter();
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  uint16_t data_port() const noexcept { return data_port_; }
  Provider provider() const noexcept { return primary_->provider(); }
  std::string describe() const;

  // Registers [base, base+length) for remote read/write. Throws.
  MemoryRegion export_memory(void* base, size_t length);
  // Where lease byte 0 is, in RMA requests.
  uint64_t remote_base(const void* base) const noexcept;

  // The connection-manager wait fd for the owner's poll loop, and the processing of
  // its events: `admit` sees a request's private data and returns a session cookie
  // (0 rejects it). Returns true if the owner may sleep in poll (fi_trywait passed).
  int event_fd() const noexcept { return eq_fd_; }
  bool ready_to_wait() noexcept;
  void process_events(const std::function<uint64_t(std::span<const uint8_t>)>& admit);
  void disconnect(uint64_t cookie) noexcept;  // closes that session's data connections
  size_t connection_count() const noexcept { return connections_.size(); }

 private:
  Exporter() = default;
  void progress_loop() noexcept;
  fid_cq* open_cq(Domain& domain, int* fd);  // throws

  std::unique_ptr<Domain> primary_;
  fid_pep* pep_ = nullptr;
  fid_eq* eq_ = nullptr;
  int eq_fd_ = -1;
  fid_cq* cq_ = nullptr;
  int cq_fd_ = -1;
  uint16_t data_port_ = 0;
  struct Connection {
    fid_ep* ep;
    uint64_t cookie;
  };
  std::map<fid_t, Connection> connections_;
  UniqueFd stop_fd_;
  std::atomic<bool> stopping_{false};
  std::chrono::microseconds spin_{50};
  std::thread progress_;
};

}  // namespace emp::net
