#include "net/exporter.h"

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>
#include <sys/eventfd.h>

#include <stdexcept>

#include "common/log.h"
#include "net/socket.h"

namespace emp::net {

fid_cq* Exporter::open_cq(Domain& domain, int* fd) {
  fi_cq_attr attr{};
  attr.format = FI_CQ_FORMAT_CONTEXT;
  attr.size = 1024;
  attr.wait_obj = FI_WAIT_FD;
  fid_cq* cq = nullptr;
  int rc = fi_cq_open(domain.domain(), &attr, &cq, nullptr);
  if (rc == -FI_ENOSYS || rc == -FI_EINVAL) {
    attr.wait_obj = FI_WAIT_NONE;
    rc = fi_cq_open(domain.domain(), &attr, &cq, nullptr);
    *fd = -1;
  } else if (rc == 0 && fi_control(&cq->fid, FI_GETWAIT, fd) != 0) {
    *fd = -1;
  }
  if (rc) throw std::runtime_error(std::string("fi_cq_open on ") + to_string(domain.provider()) + ": " + fabric_error(rc));
  return cq;
}

std::unique_ptr<Exporter> Exporter::open(const ExporterConfig& config) {
  std::unique_ptr<Exporter> exporter(new Exporter());
  DomainOptions options;
  options.provider = config.provider;
  options.device = config.device;
  options.node = config.bind_address;
  options.service = "0";
  options.passive = true;
  exporter->primary_ = Domain::open(options);
  Domain& domain = *exporter->primary_;

  fi_eq_attr eq_attr{};
  eq_attr.size = 64;
  eq_attr.wait_obj = FI_WAIT_FD;
  int rc = fi_eq_open(domain.fabric(), &eq_attr, &exporter->eq_, nullptr);
  if (rc) throw std::runtime_error("fi_eq_open: " + fabric_error(rc));
  if (fi_control(&exporter->eq_->fid, FI_GETWAIT, &exporter->eq_fd_) != 0)
    throw std::runtime_error("the connection-manager queue has no wait fd");
  exporter->cq_ = exporter->open_cq(domain, &exporter->cq_fd_);

  rc = fi_passive_ep(domain.fabric(), const_cast<fi_info*>(domain.info()), &exporter->pep_, nullptr);
  if (rc) throw std::runtime_error("fi_passive_ep: " + fabric_error(rc));
  if ((rc = fi_pep_bind(exporter->pep_, &exporter->eq_->fid, 0)) || (rc = fi_listen(exporter->pep_)))
    throw std::runtime_error("cannot listen for data connections: " + fabric_error(rc));
  sockaddr_storage addr{};
  size_t addrlen = sizeof addr;
  rc = fi_getname(&exporter->pep_->fid, &addr, &addrlen);
  if (rc) throw std::runtime_error("fi_getname: " + fabric_error(rc));
  if (addr.ss_family == AF_INET) exporter->data_port_ = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) exporter->data_port_ = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);

  exporter->spin_ = config.spin;
  exporter->stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  exporter->progress_ = std::thread([raw = exporter.get()] { raw->progress_loop(); });
  return exporter;
}

Exporter::~Exporter() {
  stopping_.store(true);
  if (stop_fd_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
  }
  if (progress_.joinable()) progress_.join();
  for (auto& [fid, connection] : connections_) fi_close(&connection.ep->fid);
  connections_.clear();
  if (pep_) fi_close(&pep_->fid);
  if (cq_) fi_close(&cq_->fid);
  if (eq_) fi_close(&eq_->fid);
}

std::string Exporter::describe() const {
  return std::string(to_string(primary_->provider())) + " data port " + std::to_string(data_port_);
}

MemoryRegion Exporter::export_memory(void* base, size_t length) {
  Domain& domain = *primary_;
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto mr = domain.register_memory(base, length, FI_REMOTE_READ | FI_REMOTE_WRITE, domain.random_key());
    if (mr) return MemoryRegion(*mr);
    if (mr.status().code() != EEXIST) break;  // key collision: try another
  }
  throw std::runtime_error(std::string("cannot register lease memory with ") + to_string(domain.provider()));
}

uint64_t Exporter::remote_base(const void* base) const noexcept {
  return primary_->virtual_addressing() ? reinterpret_cast<uint64_t>(base) : 0;
}

bool Exporter::ready_to_wait() noexcept {
  fid* fids[1] = {&eq_->fid};
  return fi_trywait(primary_->fabric(), fids, 1) == FI_SUCCESS;
}

void Exporter::process_events(const std::function<uint64_t(std::span<const uint8_t>)>& admit) {
  while (true) {
    uint32_t event = 0;
    alignas(fi_eq_cm_entry) uint8_t buffer[sizeof(fi_eq_cm_entry) + 256] = {};
    auto* entry = reinterpret_cast<fi_eq_cm_entry*>(buffer);
    ssize_t n = fi_eq_read(eq_, &event, buffer, sizeof buffer, 0);
    if (n == -FI_EAGAIN) return;
    if (n == -FI_EAVAIL) {
      fi_eq_err_entry err{};
      fi_eq_readerr(eq_, &err, 0);
      auto it = connections_.find(err.fid);
      if (it != connections_.end()) {
        fi_close(&it->second.ep->fid);
        connections_.erase(it);
      }
      EMP_DEBUG("vmd", "data connection error: %s", fabric_error(err.err).c_str());
      continue;
    }
    if (n < 0) {
      EMP_WARN("vmd", "connection-manager queue: %s", fabric_error(static_cast<int>(n)).c_str());
      return;
    }
    if (event == FI_CONNREQ) {
      fi_info* info = entry->info;
      size_t private_length = static_cast<size_t>(n) > sizeof(fi_eq_cm_entry) ? n - sizeof(fi_eq_cm_entry) : 0;
      if (private_length > 256) private_length = 256;
      uint64_t cookie = admit({entry->data, private_length});
      if (cookie == 0) {
        fi_reject(pep_, info->handle, nullptr, 0);
        fi_freeinfo(info);
        continue;
      }
      fid_ep* ep = nullptr;
      int rc = fi_endpoint(primary_->domain(), info, &ep, nullptr);
      if (rc == 0 && !(rc = fi_ep_bind(ep, &eq_->fid, 0)) && !(rc = fi_ep_bind(ep, &cq_->fid, FI_TRANSMIT | FI_RECV)) &&
          !(rc = fi_enable(ep)) && !(rc = fi_accept(ep, nullptr, 0))) {
        connections_[&ep->fid] = Connection{ep, cookie};
      } else {
        EMP_WARN("vmd", "cannot accept a data connection: %s", fabric_error(rc).c_str());
        if (ep) fi_close(&ep->fid);
        else fi_reject(pep_, info->handle, nullptr, 0);
      }
      fi_freeinfo(info);
    } else if (event == FI_SHUTDOWN) {
      auto it = connections_.find(entry->fid);
      if (it != connections_.end()) {
        fi_close(&it->second.ep->fid);
        connections_.erase(it);
      }
    }
  }
}

void Exporter::disconnect(uint64_t cookie) noexcept {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second.cookie == cookie) {
      fi_shutdown(it->second.ep, 0);
      fi_close(&it->second.ep->fid);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void Exporter::progress_loop() noexcept {
  pthread_setname_np(pthread_self(), "vmd-progress");
  fi_cq_entry entries[16];
  auto drain = [&](fid_cq* cq) {
    int n = 0;
    while (fi_cq_read(cq, entries, 16) > 0) ++n;
    return n;
  };
  while (!stopping_.load(std::memory_order_relaxed)) {
    drain(cq_);
    fid* fids[1] = {&cq_->fid};
    if (cq_fd_ < 0 || fi_trywait(primary_->fabric(), fids, 1) != FI_SUCCESS) {
      struct timespec ts {0, 20'000};
      ::nanosleep(&ts, nullptr);
      continue;
    }
    pollfd pfds[2] = {{stop_fd_.get(), POLLIN, 0}, {cq_fd_, POLLIN, 0}};
    struct timespec timeout {1, 0};
    int ready = ::ppoll(pfds, 2, &timeout, nullptr);
    if (ready > 0 && (pfds[0].revents & POLLIN)) {
      uint64_t value;
      (void)!::read(stop_fd_.get(), &value, sizeof value);
    }
    if (ready > 0 && (pfds[1].revents & POLLIN)) {
      // Activity: keep progressing briefly so the next request needs no wake-up.
      auto until = Clock::now() + spin_;
      while (Clock::now() < until && !stopping_.load(std::memory_order_relaxed)) {
        if (drain(cq_) == 0) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
    }
  }
}

}  // namespace emp::net
