// Thread roles inside libemp.so: whose memory a thread's allocations and mappings are.
//
// An application thread's malloc and anonymous mmap become EMP-managed memory. EMP's own
// threads (fault handlers, evictor, control, the transport's) and any application thread
// while it runs EMP code (an InternalScope) are "internal": their allocations come from
// glibc and their mappings are plain, so the fault path never touches memory it manages.
// `in_allocator` marks a thread running inside mimalloc, whose mmap calls are served
// from the heap arena. All state is thread-local (initial-exec TLS: no allocation).
#pragma once

#include <cstdint>

namespace emp::preload {

struct ThreadRole {
  bool internal_thread = false;  // created by EMP code (inherited through pthread_create)
  uint32_t internal_depth = 0;   // > 0 while an application thread runs EMP code
  uint32_t allocator_depth = 0;  // > 0 while inside mimalloc
};

inline ThreadRole& thread_role() noexcept {
  static thread_local ThreadRole role __attribute__((tls_model("initial-exec")));
  return role;
}

inline bool is_internal() noexcept {
  const ThreadRole& role = thread_role();
  return role.internal_thread || role.internal_depth > 0;
}

inline bool in_allocator() noexcept { return thread_role().allocator_depth > 0; }

// Marks EMP code running on the calling thread (nests).
class InternalScope {
 public:
  InternalScope() noexcept { ++thread_role().internal_depth; }
  ~InternalScope() { --thread_role().internal_depth; }
  InternalScope(const InternalScope&) = delete;
  InternalScope& operator=(const InternalScope&) = delete;
};

// Marks a call into mimalloc (nests).
class AllocatorScope {
 public:
  AllocatorScope() noexcept { ++thread_role().allocator_depth; }
  ~AllocatorScope() { --thread_role().allocator_depth; }
  AllocatorScope(const AllocatorScope&) = delete;
  AllocatorScope& operator=(const AllocatorScope&) = delete;
};

}  // namespace emp::preload
