// The libfabric layer shared by clients and vmd: provider selection, one fabric +
// domain per Domain object, and memory registration. Everything above it (Channel on
// the client side, the exporter endpoints in vmd) uses FI_EP_MSG connected endpoints:
// `verbs` (InfiniBand, RoCE, iWARP) in the product, libfabric's `tcp` as a benchmark
// candidate. `Provider` names every data plane (kShm is EMP's own same-host path,
// never a libfabric domain).
//
// A Domain is created in the setup zone (open() throws with the provider's error) and
// is thread-safe afterwards (FI_THREAD_SAFE). It outlives every endpoint and memory
// registration made from it, so a reconnecting client keeps its registrations.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "net/protocol.h"

namespace emp::net {

enum class Provider { kTcp, kVerbs, kShm };
const char* to_string(Provider provider) noexcept;
protocol::ProviderId to_wire(Provider provider) noexcept;
std::optional<Provider> provider_from_wire(uint16_t value) noexcept;
// "tcp", "verbs", "shm" (case-sensitive); nullopt otherwise.
std::optional<Provider> parse_provider(const std::string& name) noexcept;
// Text for a negative libfabric return code.
std::string fabric_error(int code);

inline constexpr uint32_t kFabricVersion = FI_VERSION(1, 17);

struct DomainOptions {
  Provider provider = Provider::kTcp;
  std::string device;      // verbs: the RDMA device (e.g. "mlx5_0", "rxe0"); empty = any
  std::string node;        // passive: bind address; active MSG: the peer (picks the device)
  std::string service;     // passive: port ("0" = any); active: any port of the peer
  bool passive = false;    // true for vmd's listening side
};

class Domain {
 public:
  static std::unique_ptr<Domain> open(const DomainOptions& options);  // throws std::runtime_error
  ~Domain();
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  Provider provider() const noexcept { return provider_; }
  fid_fabric* fabric() const noexcept { return fabric_; }
  fid_domain* domain() const noexcept { return domain_; }
  const fi_info* info() const noexcept { return info_; }
  // Local buffers must be registered (verbs); otherwise descriptors may be null.
  bool local_mr_required() const noexcept { return (mr_mode_ & FI_MR_LOCAL) != 0; }
  // Remote addresses are virtual addresses (else offsets into the registration).
  bool virtual_addressing() const noexcept { return (mr_mode_ & FI_MR_VIRT_ADDR) != 0; }
  bool provider_keys() const noexcept { return (mr_mode_ & FI_MR_PROV_KEY) != 0; }
  size_t key_bytes() const noexcept { return key_bytes_; }
  std::string describe() const;

  // Registers [base, base+length). access: FI_READ|FI_WRITE for local I/O buffers,
  // FI_REMOTE_READ|FI_REMOTE_WRITE for exported memory. `requested_key` is used unless
  // the provider chooses keys itself. Returns the registration (close with fi_close).
  Result<fid_mr*> register_memory(void* base, size_t length, uint64_t access, uint64_t requested_key) noexcept;
  // A random key valid for this domain's key size (for exported registrations).
  uint64_t random_key() const noexcept;

  // A fresh fi_info naming node:service as destination (MSG clients). Throws.
  fi_info* destination_info(const std::string& node, uint16_t port) const;

 private:
  Domain() = default;
  Provider provider_ = Provider::kTcp;
  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  uint64_t mr_mode_ = 0;
  size_t key_bytes_ = 8;
  std::string device_;
};

// Hints shared by clients and servers for one provider (caller frees with fi_freeinfo).
fi_info* make_hints(Provider provider, const std::string& device);

// RAII for a registration.
class MemoryRegion {
 public:
  MemoryRegion() noexcept = default;
  explicit MemoryRegion(fid_mr* mr) noexcept : mr_(mr) {}
  MemoryRegion(MemoryRegion&& other) noexcept : mr_(other.mr_) { other.mr_ = nullptr; }
  MemoryRegion& operator=(MemoryRegion&& other) noexcept {
    if (this != &other) {
      reset();
      mr_ = other.mr_;
      other.mr_ = nullptr;
    }
    return *this;
  }
  ~MemoryRegion() { reset(); }
  void reset() noexcept;
  fid_mr* get() const noexcept { return mr_; }
  uint64_t key() const noexcept;
  void* desc() const noexcept;
  bool valid() const noexcept { return mr_ != nullptr; }

 private:
  fid_mr* mr_ = nullptr;
};

}  // namespace emp::net
