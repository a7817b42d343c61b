#include "net/fabric_path.h"

#include <algorithm>
#include <cstring>

namespace emp::net {
namespace {
constexpr size_t kChunk = 64;  // RMA operations per posted batch
}

FabricBuffers::~FabricBuffers() {
  std::unique_lock lock(reg_mu_);
  registrations_.clear();
}

Status FabricBuffers::register_buffer(void* base, size_t length) noexcept {
  if (!base || !length) return Status::error(EINVAL, "registering an empty buffer");
  if (!domain_->local_mr_required()) return Status::ok();
  Result<fid_mr*> mr = Status::error(EEXIST, "fi_mr_reg");
  for (int attempt = 0; attempt < 8 && !mr && mr.status().code() == EEXIST; ++attempt)
    mr = domain_->register_memory(base, length, FI_READ | FI_WRITE, domain_->random_key());
  if (!mr) return mr.status();
  try {
    std::unique_lock lock(reg_mu_);
    Registration registration{reinterpret_cast<uintptr_t>(base), length, MemoryRegion(*mr)};
    auto at = std::lower_bound(registrations_.begin(), registrations_.end(), registration.base,
                               [](const Registration& r, uintptr_t b) { return r.base < b; });
    registrations_.insert(at, std::move(registration));
  } catch (...) {
    fi_close(&(*mr)->fid);
    return Status::error(ENOMEM, "registering a buffer");
  }
  return Status::ok();
}

void* FabricBuffers::find_desc(const void* buffer, size_t length, bool* found) const noexcept {
  uintptr_t address = reinterpret_cast<uintptr_t>(buffer);
  std::shared_lock lock(reg_mu_);
  auto it = std::upper_bound(registrations_.begin(), registrations_.end(), address,
                             [](uintptr_t a, const Registration& r) { return a < r.base; });
  if (it != registrations_.begin()) {
    --it;
    if (address >= it->base && address + length <= it->base + it->length) {
      *found = true;
      return it->mr.desc();
    }
  }
  *found = false;
  return nullptr;
}

std::unique_ptr<FabricPath> FabricPath::connect(FabricBuffers& buffers, const std::string& peer,
                                                const protocol::LeaseGrant& grant, const ChannelOptions& options,
                                                Deadline deadline) {
  std::unique_ptr<FabricPath> path(new FabricPath(buffers));
  protocol::DataConnect request{protocol::kDataMagic, protocol::kVersion, 0, grant.lease_id, {}};
  std::memcpy(request.ticket, grant.ticket, sizeof request.ticket);
  std::span<const uint8_t> hello{reinterpret_cast<const uint8_t*>(&request), sizeof request};
  path->reads_ = Channel::connect(buffers.domain(), peer, grant.data_port, hello, deadline, options);
  path->writes_ = Channel::connect(buffers.domain(), peer, grant.data_port, hello, deadline, options);
  path->key_ = grant.mr_key;
  path->base_ = grant.remote_base;
  return path;
}

Status FabricPath::read(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept {
  return run(*reads_, spans, true, deadline);
}
Status FabricPath::write(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept {
  return run(*writes_, spans, false, deadline);
}

Status FabricPath::run(Channel& channel, std::span<const tier::IoSpan> spans, bool is_read, Deadline deadline) noexcept {
  Domain& domain = buffers_.domain();
  const bool need_mr = domain.local_mr_required();
  for (size_t first = 0; first < spans.size(); first += kChunk) {
    size_t count = std::min(kChunk, spans.size() - first);
    RmaOp ops[kChunk];
    MemoryRegion temporary[kChunk];
    for (size_t i = 0; i < count; ++i) {
      const tier::IoSpan& span = spans[first + i];
      bool found = false;
      void* desc = buffers_.find_desc(span.buffer, span.length, &found);
      if (!found && need_mr) {
        // An unregistered buffer: register it for this call only (slow but correct; the
        // engine registers its staging memory).
        auto mr = domain.register_memory(span.buffer, span.length, FI_READ | FI_WRITE, domain.random_key());
        if (!mr) return mr.status();
        temporary[i] = MemoryRegion(*mr);
        desc = temporary[i].desc();
      }
      ops[i] = RmaOp{span.buffer, span.length, desc, base_ + span.offset};
    }
    Status status = is_read ? channel.read({ops, count}, key_, deadline) : channel.write({ops, count}, key_, deadline);
    if (!status) return status;
  }
  return Status::ok();
}

}  // namespace emp::net
