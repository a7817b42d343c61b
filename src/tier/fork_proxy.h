// The second tier across fork(): a forked child reads and writes through its parent.
//
// The child inherits the parent's block tables, whose evicted blocks name slots in the
// parent's tiers, but none of the parent's connections, rings or allocators may be used
// from the child. So the child's Pool is made of ParentTiers speaking over a socketpair
// to a ForkProxyServer thread in the parent: for each parent tier, a read-only view (the
// slots that existed at the fork, which the parent keeps intact: BlockMeta::has_shared_slot,
// Pool::release_shared) and a writable space of the child's own, whose offsets the
// parent maps to slots it allocates in its pool and frees when the child ends. Works for
// every tier kind (file, device, remote donor) and nests (a child's pool serves its own
// children). Thread-safe: a ParentChannel serialises its requests.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "common/unique_fd.h"
#include "tier/pool.h"
#include "tier/tier.h"

namespace emp::tier {

// The child's end of the socket; one request at a time.
class ParentChannel {
 public:
  explicit ParentChannel(UniqueFd socket) noexcept : socket_(std::move(socket)) {}
  // One request: `send` (length bytes) goes with writes, `receive` is filled by reads.
  Status call(uint32_t op, uint32_t tier, uint64_t offset, uint64_t length, uint64_t slot_bytes, const void* send,
              void* receive) noexcept;

 private:
  std::mutex mutex_;
  UniqueFd socket_;
};

// A child's pool over its parent: the parent's N tiers read-only (indices 0..N-1, as in
// the inherited block tables) followed by N writable spaces of the child's own.
std::unique_ptr<Pool> make_child_pool(Pool& parent_view, UniqueFd socket);

// In the parent: serves one child's requests on `socket` from a detached thread
// (emp-fork-proxy) until the child closes it, then frees the child's slots and calls
// pool.end_child(child_id). The pool must outlive the thread (libemp.so's never dies).
// Throws std::system_error when the thread cannot start.
void start_fork_proxy(Pool& pool, UniqueFd socket, uint64_t child_id);

}  // namespace emp::tier
