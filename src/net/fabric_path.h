// FabricPath: the verbs data plane of a lease — two libfabric Channels (reads, writes)
// posting one-sided RMA into the lease's registration. FabricBuffers is the client's
// libfabric domain and its local buffer registrations; it lives as long as the remote
// tier (registrations survive reconnects) and opens a FabricPath per attachment.
// Thread-safe: register_buffer() may race with I/O (reg_mu_ is a leaf lock).
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "net/channel.h"
#include "net/data_path.h"
#include "net/fabric.h"
#include "net/protocol.h"

namespace emp::net {

class FabricBuffers {
 public:
  explicit FabricBuffers(std::unique_ptr<Domain> domain) : domain_(std::move(domain)) {}
  ~FabricBuffers();
  Domain& domain() const noexcept { return *domain_; }
  Status register_buffer(void* base, size_t length) noexcept;
  // The registration descriptor covering [buffer, buffer+length), or nullptr.
  void* find_desc(const void* buffer, size_t length, bool* found) const noexcept;

 private:
  struct Registration {
    uintptr_t base;
    size_t length;
    MemoryRegion mr;
  };
  std::unique_ptr<Domain> domain_;
  mutable std::shared_mutex reg_mu_;
  std::vector<Registration> registrations_;  // sorted by base
};

class FabricPath final : public DataPath {
 public:
  // Opens the two channels to the grant's data port. Throws std::runtime_error.
  static std::unique_ptr<FabricPath> connect(FabricBuffers& buffers, const std::string& peer,
                                             const protocol::LeaseGrant& grant, const ChannelOptions& options,
                                             Deadline deadline);
  Status read(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  Status write(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  bool broken() const noexcept override { return reads_->broken() || writes_->broken(); }
  void fail(Status why) noexcept override {
    reads_->fail(why);
    writes_->fail(why);
  }

 private:
  FabricPath(FabricBuffers& buffers) : buffers_(buffers) {}
  Status run(Channel& channel, std::span<const tier::IoSpan> spans, bool is_read, Deadline deadline) noexcept;
  FabricBuffers& buffers_;
  std::unique_ptr<Channel> reads_;
  std::unique_ptr<Channel> writes_;
  uint64_t key_ = 0;
  uint64_t base_ = 0;
};

}  // namespace emp::net
