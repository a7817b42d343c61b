#include "tier/fork_proxy.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "common/log.h"
#include "os/mapping.h"

namespace emp::tier {
namespace {

enum Op : uint32_t { kReadShared = 1, kReadOwn = 2, kWriteOwn = 3 };
constexpr uint64_t kMaxRequest = 2ULL << 20;  // one block at most

struct Request {
  uint32_t op;
  uint32_t tier;
  uint64_t offset;
  uint64_t length;
  uint64_t slot_bytes;
};
struct Reply {
  int32_t error;  // 0 or an errno value
  uint32_t reserved;
  uint64_t length;
};

bool send_all(int fd, const void* data, size_t length) noexcept {
  auto* p = static_cast<const char*>(data);
  while (length) {
    ssize_t n = ::send(fd, p, length, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

bool receive_all(int fd, void* data, size_t length) noexcept {
  auto* p = static_cast<char*>(data);
  while (length) {
    ssize_t n = ::recv(fd, p, length, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

class ParentTier final : public Tier {
 public:
  ParentTier(std::shared_ptr<ParentChannel> channel, bool own, unsigned index, const Tier& parent)
      : Tier((own ? "fork-own:" : "fork-parent:") + parent.name(), parent.capacity()),
        channel_(std::move(channel)),
        own_(own),
        index_(index) {}

 protected:
  Status read_impl(std::span<const IoSpan> spans) noexcept override {
    for (const IoSpan& span : spans) {
      Status status = channel_->call(own_ ? kReadOwn : kReadShared, index_, span.offset, span.length, 0, nullptr, span.buffer);
      if (!status) return status;
    }
    return Status::ok();
  }
  Status write_impl(std::span<const IoSpan> spans) noexcept override {
    if (!own_) return Status::error(EROFS, "the parent's slots are read-only after fork");
    for (const IoSpan& span : spans) {
      uint64_t slot_bytes = BuddyAllocator::rounded_size(span.length);
      Status status = channel_->call(kWriteOwn, index_, span.offset, span.length, slot_bytes, span.buffer, nullptr);
      if (!status) return status;
    }
    return Status::ok();
  }

 private:
  std::shared_ptr<ParentChannel> channel_;
  bool own_;
  unsigned index_;
};

// The parent's side of one child.
class ForkProxy {
 public:
  ForkProxy(Pool& pool, UniqueFd socket, uint64_t child_id) : pool_(pool), socket_(std::move(socket)), child_id_(child_id) {}

  void run() noexcept {
    auto staging = os::Mapping::anonymous(kMaxRequest);
    bool usable = staging && pool_.register_buffer(staging->data(), staging->size());
    Request request;
    while (usable && receive_all(socket_.get(), &request, sizeof request)) {
      if (!serve(request, staging->data())) break;
    }
    for (const auto& [key, slot] : own_) pool_.release(slot.first, slot.second);
    pool_.end_child(child_id_);
  }

 private:
  bool serve(const Request& request, std::byte* buffer) noexcept {
    Reply reply{0, 0, 0};
    bool valid = request.length <= kMaxRequest && request.length % kTierAlignment == 0 && request.length > 0;
    if (request.op == kWriteOwn) {
      if (!valid) return false;  // cannot skip an unknown payload: drop the child
      if (!receive_all(socket_.get(), buffer, request.length)) return false;
    }
    Status status = Status::ok();
    if (!valid) {
      status = Status::error(EINVAL, "bad request");
    } else if (request.op == kReadShared) {
      status = request.tier < pool_.tier_count() ? pool_.tier(request.tier).read(request.offset, buffer, request.length)
                                                 : Status::error(EINVAL, "no such tier");
    } else if (request.op == kReadOwn || request.op == kWriteOwn) {
      status = own_slot(request, buffer);
    } else {
      status = Status::error(EINVAL, "unknown request");
    }
    if (!status) reply.error = status.code() ? status.code() : EIO;
    if (status && request.op != kWriteOwn) reply.length = request.length;
    if (!send_all(socket_.get(), &reply, sizeof reply)) return false;
    return reply.length == 0 || send_all(socket_.get(), buffer, reply.length);
  }

  // The child's spaces are virtual: each whole-slot write at (space, offset) gets a slot
  // of this pool; reads may address any part of it (subblocks).
  Status own_slot(const Request& request, std::byte* buffer) noexcept {
    if (request.op == kReadOwn) {
      auto it = own_.upper_bound(std::make_pair(request.tier, request.offset));
      if (it == own_.begin()) return Status::error(EIO, "the child reads a slot it never wrote");
      --it;
      const auto& [key, value] = *it;
      if (key.first != request.tier || request.offset + request.length > key.second + value.second)
        return Status::error(EIO, "the child reads a slot it never wrote");
      return pool_.tier(value.first.tier()).read(value.first.offset() + (request.offset - key.second), buffer,
                                                 request.length);
    }
    // The child's allocator never has two live slots overlapping: older ones there are gone.
    uint64_t end = request.offset + request.slot_bytes;
    auto first = own_.upper_bound(std::make_pair(request.tier, request.offset));
    if (first != own_.begin() && std::prev(first)->first.first == request.tier) --first;
    for (auto at = first; at != own_.end() && at->first.first == request.tier && at->first.second < end;) {
      if (at->first.second + at->second.second <= request.offset) {
        ++at;
        continue;
      }
      if (at->first.second == request.offset && at->second.second == request.slot_bytes) break;  // rewrite in place
      pool_.release(at->second.first, at->second.second);
      at = own_.erase(at);
    }
    auto found = own_.find(std::make_pair(request.tier, request.offset));
    if (found == own_.end()) {
      auto slot = pool_.allocate(request.slot_bytes);
      if (!slot) return slot.status();
      try {
        found = own_.emplace(std::make_pair(request.tier, request.offset), std::make_pair(*slot, request.slot_bytes)).first;
      } catch (...) {
        pool_.release(*slot, request.slot_bytes);
        return Status::error(ENOMEM, "slot map");
      }
    }
    Slot slot = found->second.first;
    return pool_.tier(slot.tier()).write(slot.offset(), buffer, request.length);
  }

  Pool& pool_;
  UniqueFd socket_;
  uint64_t child_id_;
  std::map<std::pair<uint32_t, uint64_t>, std::pair<Slot, uint64_t>> own_;  // child's (space, offset) -> slot
};

}  // namespace

Status ParentChannel::call(uint32_t op, uint32_t tier, uint64_t offset, uint64_t length, uint64_t slot_bytes,
                           const void* send, void* receive) noexcept {
  std::lock_guard lock(mutex_);
  Request request{op, tier, offset, length, slot_bytes};
  if (!send_all(socket_.get(), &request, sizeof request) || (send && !send_all(socket_.get(), send, length)))
    return Status::error(EPIPE, "the parent process (which holds this forked process's second tier) is gone");
  Reply reply;
  if (!receive_all(socket_.get(), &reply, sizeof reply))
    return Status::error(EPIPE, "the parent process (which holds this forked process's second tier) is gone");
  if (reply.length && (!receive || reply.length != length || !receive_all(socket_.get(), receive, reply.length)))
    return Status::error(EPROTO, "bad reply from the parent process");
  if (reply.error) return Status::error(reply.error, "the parent process could not serve the second-tier request");
  return Status::ok();
}

std::unique_ptr<Pool> make_child_pool(Pool& parent_view, UniqueFd socket) {
  auto channel = std::make_shared<ParentChannel>(std::move(socket));
  std::vector<std::unique_ptr<Tier>> tiers;
  size_t n = parent_view.tier_count();
  for (size_t i = 0; i < n; ++i)
    tiers.push_back(std::make_unique<ParentTier>(channel, false, static_cast<unsigned>(i), parent_view.tier(i)));
  for (size_t i = 0; i < n; ++i)
    tiers.push_back(std::make_unique<ParentTier>(channel, true, static_cast<unsigned>(n + i), parent_view.tier(i)));
  return std::make_unique<Pool>(std::move(tiers), n);
}

void start_fork_proxy(Pool& pool, UniqueFd socket, uint64_t child_id) {
  auto proxy = std::make_shared<ForkProxy>(pool, std::move(socket), child_id);
  std::thread thread([proxy] {
    pthread_setname_np(pthread_self(), "emp-fork-proxy");
    proxy->run();
  });
  thread.detach();
}

}  // namespace emp::tier
