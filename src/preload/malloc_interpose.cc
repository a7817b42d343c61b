// The malloc family and C++ operator new/delete of libemp.so.
//
// An application thread's allocations go to mimalloc, whose memory comes from the heap
// arena (EMP-managed); large ones (kLargeAllocation and up, as glibc's mmap threshold)
// get a mapping of their own through libemp.so's mmap, so a growing realloc moves page
// tables with mremap instead of copying (and, while the budget has room, the kernel
// serves it: a deferred region). EMP's own allocations (internal threads and scopes, and anything
// before start-up) go to glibc's allocator, whose memory is never managed. free() and
// friends tell the two apart by address: the arena is one range. Every entry point is
// exception-free (operator new throws std::bad_alloc as the language requires).
#include <errno.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mimalloc.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "os/page.h"
#include "preload/next_symbol.h"
#include "preload/runtime.h"
#include "preload/thread_role.h"

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);
}

namespace emp::preload {
namespace {

// The arena when this thread's allocations belong to the application.
HeapArena* application_arena() noexcept {
  if (is_internal()) return nullptr;
  Runtime* rt = runtime();
  return rt ? rt->arena() : nullptr;
}

HeapArena* arena_of(const void* p) noexcept {
  Runtime* rt = runtime();
  HeapArena* arena = rt ? rt->arena() : nullptr;
  return arena && p && arena->contains(p) ? arena : nullptr;
}

size_t glibc_usable_size(void* p) noexcept {
  using Fn = size_t (*)(void*);
  static Fn fn = reinterpret_cast<Fn>(dlsym_next("malloc_usable_size"));
  return fn ? fn(p) : 0;
}

// A large allocation: one page of header, then the bytes, in a mapping of its own (an
// EMP region starting at the header). Told apart from glibc's blocks by the region table:
// glibc's memory is never an EMP region.
constexpr size_t kLargeAllocation = 1 << 20;
constexpr uint64_t kLargeMagic = 0x454d504c41524745ULL;  // "EMPLARGE"
struct LargeHeader {
  uint64_t magic;
  size_t mapping_bytes;
};

size_t large_mapping_bytes(size_t size) noexcept { return os::page_ceil(size) + os::kPageSize; }

void* allocate_large(size_t size) noexcept {
  if (size > (SIZE_MAX >> 1)) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t bytes = large_mapping_bytes(size);
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;  // errno from mmap (ENOMEM)
  *static_cast<LargeHeader*>(base) = LargeHeader{kLargeMagic, bytes};
  return static_cast<char*>(base) + os::kPageSize;
}

LargeHeader* large_header(void* p) noexcept {
  uintptr_t address = reinterpret_cast<uintptr_t>(p);
  // EMP's own blocks are glibc's (and EMP may free them holding the region table's lock).
  if (address % os::kPageSize || address < os::kPageSize || is_internal()) return nullptr;
  Runtime* rt = runtime();
  if (!rt || !rt->active()) return nullptr;
  void* base = reinterpret_cast<void*>(address - os::kPageSize);
  if (!rt->engine().is_region_start(base)) return nullptr;
  auto* header = static_cast<LargeHeader*>(base);
  return header->magic == kLargeMagic ? header : nullptr;
}

size_t large_usable_size(const LargeHeader* header) noexcept { return header->mapping_bytes - os::kPageSize; }

void* allocate(size_t size) noexcept {
  if (application_arena()) {
    if (size >= kLargeAllocation) return allocate_large(size);
    AllocatorScope scope;
    return mi_malloc(size);
  }
  return __libc_malloc(size);
}

void* allocate_aligned(size_t alignment, size_t size) noexcept {
  if (application_arena()) {
    AllocatorScope scope;
    return mi_malloc_aligned(size, alignment);
  }
  return __libc_memalign(alignment, size);
}

void release(void* p) noexcept {
  if (!p) return;
  if (arena_of(p)) {
    AllocatorScope scope;
    mi_free(p);
    return;
  }
  if (LargeHeader* header = large_header(p)) {
    ::munmap(header, header->mapping_bytes);
    return;
  }
  __libc_free(p);
}

// A large allocation resized: mremap (the kernel moves or extends the mapping), or into
// the arena when it shrinks below the threshold.
void* reallocate_large(LargeHeader* header, size_t size) noexcept {
  if (size >= kLargeAllocation && size <= (SIZE_MAX >> 1)) {
    size_t bytes = large_mapping_bytes(size);
    void* moved = ::mremap(header, header->mapping_bytes, bytes, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) return nullptr;
    static_cast<LargeHeader*>(moved)->mapping_bytes = bytes;
    return static_cast<char*>(moved) + os::kPageSize;
  }
  void* q = allocate(size);
  if (!q) return nullptr;
  size_t old = large_usable_size(header);
  std::memcpy(q, reinterpret_cast<char*>(header) + os::kPageSize, old < size ? old : size);
  ::munmap(header, header->mapping_bytes);
  return q;
}

void* reallocate(void* p, size_t size) noexcept {
  if (!p) return allocate(size);
  if (size == 0) {
    release(p);
    return nullptr;
  }
  if (arena_of(p)) {
    if (application_arena()) {
      if (size >= kLargeAllocation) {
        size_t old;
        {
          AllocatorScope scope;
          old = mi_usable_size(p);
        }
        if (old < size) {  // grows past the threshold: into a mapping of its own
          void* q = allocate_large(size);
          if (!q) return nullptr;
          std::memcpy(q, p, old);
          release(p);
          return q;
        }
      }
      AllocatorScope scope;
      return mi_realloc(p, size);
    }
    // EMP code resizing an application block (not expected): move it to glibc.
    void* q = __libc_malloc(size);
    if (!q) return nullptr;
    size_t old;
    {
      AllocatorScope scope;
      old = mi_usable_size(p);
    }
    std::memcpy(q, p, old < size ? old : size);
    release(p);
    return q;
  }
  if (LargeHeader* header = large_header(p)) return reallocate_large(header, size);
  return __libc_realloc(p, size);  // memory from before start-up stays with glibc
}

void* new_or_throw(size_t size, size_t alignment = 0) {
  for (;;) {
    void* p = alignment ? allocate_aligned(alignment, size ? size : 1) : allocate(size ? size : 1);
    if (p) return p;
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

}  // namespace
}  // namespace emp::preload

using namespace emp::preload;

extern "C" {

void* malloc(size_t size) { return allocate(size); }
void free(void* p) { release(p); }
void cfree(void* p) { release(p); }
void* realloc(void* p, size_t size) { return reallocate(p, size); }

void* calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (application_arena()) {
    if (total >= kLargeAllocation) return allocate_large(total);  // a fresh mapping reads zeros
    AllocatorScope scope;
    return mi_calloc(count, size);
  }
  return __libc_calloc(count, size);
}

void* reallocarray(void* p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return reallocate(p, total);
}

int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1))) return EINVAL;
  void* p = allocate_aligned(alignment, size ? size : 1);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

void* aligned_alloc(size_t alignment, size_t size) {
  if (alignment == 0 || (alignment & (alignment - 1))) {
    errno = EINVAL;
    return nullptr;
  }
  return allocate_aligned(alignment, size);
}

void* memalign(size_t alignment, size_t size) {
  if (alignment & (alignment - 1)) {
    errno = EINVAL;
    return nullptr;
  }
  return allocate_aligned(alignment < sizeof(void*) ? sizeof(void*) : alignment, size);
}

void* valloc(size_t size) { return allocate_aligned(emp::os::kPageSize, size); }
void* pvalloc(size_t size) { return allocate_aligned(emp::os::kPageSize, emp::os::page_ceil(size)); }

size_t malloc_usable_size(void* p) {
  if (!p) return 0;
  if (arena_of(p)) {
    AllocatorScope scope;
    return mi_usable_size(p);
  }
  if (LargeHeader* header = large_header(p)) return large_usable_size(header);
  return glibc_usable_size(p);
}

}  // extern "C"

// C++ operators: routed here so no other library's operator new (libstdc++, or
// mimalloc's own overrides) can bypass the split between application and EMP memory.
void* operator new(size_t size) { return new_or_throw(size); }
void* operator new[](size_t size) { return new_or_throw(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept { return allocate(size ? size : 1); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return allocate(size ? size : 1); }
void* operator new(size_t size, std::align_val_t al) { return new_or_throw(size, static_cast<size_t>(al)); }
void* operator new[](size_t size, std::align_val_t al) { return new_or_throw(size, static_cast<size_t>(al)); }
void* operator new(size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocate_aligned(static_cast<size_t>(al), size ? size : 1);
}
void* operator new[](size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocate_aligned(static_cast<size_t>(al), size ? size : 1);
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, size_t) noexcept { release(p); }
void operator delete[](void* p, size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
