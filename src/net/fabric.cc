#include "net/fabric.h"

#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>

#include <cstring>
#include <stdexcept>

#include "common/log.h"
#include "net/auth.h"

namespace emp::net {

const char* to_string(Provider provider) noexcept {
  switch (provider) {
    case Provider::kTcp: return "tcp";
    case Provider::kVerbs: return "verbs";
    case Provider::kShm: return "shm";
  }
  return "?";
}

protocol::ProviderId to_wire(Provider provider) noexcept {
  switch (provider) {
    case Provider::kTcp: return protocol::ProviderId::kTcp;
    case Provider::kVerbs: return protocol::ProviderId::kVerbs;
    case Provider::kShm: return protocol::ProviderId::kShm;
  }
  return protocol::ProviderId::kTcp;
}

std::optional<Provider> provider_from_wire(uint16_t value) noexcept {
  switch (static_cast<protocol::ProviderId>(value)) {
    case protocol::ProviderId::kTcp: return Provider::kTcp;
    case protocol::ProviderId::kVerbs: return Provider::kVerbs;
    case protocol::ProviderId::kShm: return Provider::kShm;
  }
  return std::nullopt;
}

std::optional<Provider> parse_provider(const std::string& name) noexcept {
  if (name == "tcp") return Provider::kTcp;
  if (name == "verbs") return Provider::kVerbs;
  if (name == "shm") return Provider::kShm;
  return std::nullopt;
}

std::string fabric_error(int code) {
  if (code < 0) code = -code;
  return std::string(fi_strerror(code)) + " (" + std::to_string(code) + ")";
}

fi_info* make_hints(Provider provider, const std::string& device) {
  if (provider == Provider::kShm) throw std::invalid_argument("shm is EMP's own data path, not a libfabric provider");
  fi_info* hints = fi_allocinfo();
  if (!hints) throw std::bad_alloc();
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
  hints->mode = FI_CONTEXT;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->addr_format = FI_SOCKADDR;
  hints->fabric_attr->prov_name = strdup(to_string(provider));
  if (!device.empty() && provider == Provider::kVerbs) hints->domain_attr->name = strdup(device.c_str());
  return hints;
}

std::unique_ptr<Domain> Domain::open(const DomainOptions& options) {
  fi_info* hints = make_hints(options.provider, options.device);
  fi_info* info = nullptr;
  const char* node = options.node.empty() ? nullptr : options.node.c_str();
  const char* service = options.service.empty() ? nullptr : options.service.c_str();
  uint64_t flags = 0;
  if (options.passive) flags |= FI_SOURCE;
  // An active MSG client names its peer only to pick the right domain (verbs resolves
  // the route to an RDMA device); each connection gets its own destination info.
  int rc = fi_getinfo(kFabricVersion, node, service, flags, hints, &info);
  fi_freeinfo(hints);
  std::string what = std::string("libfabric provider '") + to_string(options.provider) + "'" +
                     (options.device.empty() ? "" : " device '" + options.device + "'");
  if (rc != 0 || !info) throw std::runtime_error(what + " is not available: " + fabric_error(rc));
  // Prefer the loopback domain for tcp when serving/using loopback (fewer surprises).
  std::unique_ptr<Domain> domain(new Domain());
  domain->provider_ = options.provider;
  domain->device_ = options.device;
  domain->info_ = fi_dupinfo(info);
  fi_freeinfo(info);
  rc = fi_fabric(domain->info_->fabric_attr, &domain->fabric_, nullptr);
  if (rc) throw std::runtime_error(what + ": fi_fabric: " + fabric_error(rc));
  rc = fi_domain(domain->fabric_, domain->info_, &domain->domain_, nullptr);
  if (rc) throw std::runtime_error(what + ": fi_domain: " + fabric_error(rc));
  domain->mr_mode_ = domain->info_->domain_attr->mr_mode;
  domain->key_bytes_ = domain->info_->domain_attr->mr_key_size ? domain->info_->domain_attr->mr_key_size : 8;
  EMP_INFO("net", "opened %s", domain->describe().c_str());
  return domain;
}

Domain::~Domain() {
  if (domain_) fi_close(&domain_->fid);
  if (fabric_) fi_close(&fabric_->fid);
  if (info_) fi_freeinfo(info_);
}

std::string Domain::describe() const {
  std::string text = std::string("libfabric ") + to_string(provider_) + " domain '" +
                     (info_ && info_->domain_attr->name ? info_->domain_attr->name : "?") + "'";
  text += " mr_mode=" + std::to_string(mr_mode_) + " key_bytes=" + std::to_string(key_bytes_);
  return text;
}

Result<fid_mr*> Domain::register_memory(void* base, size_t length, uint64_t access, uint64_t requested_key) noexcept {
  fid_mr* mr = nullptr;
  int rc = fi_mr_reg(domain_, base, length, access, 0, provider_keys() ? 0 : requested_key, 0, &mr, nullptr);
  if (rc) {
    EMP_WARN("net", "fi_mr_reg(%p, %zu) on %s: %s", base, length, to_string(provider_), fabric_error(rc).c_str());
    return Status::error(-rc == FI_ENOKEY ? EEXIST : (-rc > 0 && -rc < 256 ? -rc : EIO), "fi_mr_reg");
  }
  return mr;
}

uint64_t Domain::random_key() const noexcept {
  uint64_t key = random_u64();
  if (key_bytes_ < 8) key &= (1ULL << (8 * key_bytes_)) - 1;
  return key ? key : 1;
}

fi_info* Domain::destination_info(const std::string& node, uint16_t port) const {
  fi_info* hints = make_hints(provider_, device_);
  fi_info* info = nullptr;
  std::string service = std::to_string(port);
  int rc = fi_getinfo(kFabricVersion, node.c_str(), service.c_str(), 0, hints, &info);
  fi_freeinfo(hints);
  if (rc != 0 || !info)
    throw std::runtime_error(std::string("libfabric ") + to_string(provider_) + " cannot reach " + node + ":" + service +
                             ": " + fabric_error(rc));
  return info;
}

void MemoryRegion::reset() noexcept {
  if (mr_) fi_close(&mr_->fid);
  mr_ = nullptr;
}

uint64_t MemoryRegion::key() const noexcept { return mr_ ? fi_mr_key(mr_) : 0; }
void* MemoryRegion::desc() const noexcept { return mr_ ? fi_mr_desc(mr_) : nullptr; }

}  // namespace emp::net
