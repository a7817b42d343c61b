// mmap, munmap, mremap, mprotect, madvise, fallocate, pthread_create and fork of libemp.so.
//
// An application thread's anonymous private mappings become EMP regions; mimalloc's
// mappings are carved from the heap arena; everything else (files, shared memory,
// EMP's own threads, a forked child) passes straight to the kernel. In guest-RAM mode
// (emp-qemu) only the guest RAM is managed, anonymous or a memfd, and hole punches in
// that memfd become discards. Calls that touch
// managed memory keep EMP's books exact: munmap forgets (and splits) regions, madvise
// discards, mprotect without read access is noted for the evictor, mremap of a managed
// range copies into a new managed range (or, while the kernel still serves it, moves in
// the page tables). Every entry point is exception-free and sets
// errno like the kernel. fork() first prepares the child's share of the second tier
// (tier/fork_watch.h) and fails with ENOMEM, as a strict-overcommit kernel would, when
// the second tier cannot hold the child's copy.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>

#include "common/log.h"
#include "os/page.h"
#include "os/raw_syscalls.h"
#include "preload/next_symbol.h"
#include "preload/runtime.h"
#include "preload/thread_role.h"

extern "C" {
void* __libc_malloc(size_t size);
void __libc_free(void* p);
}

namespace emp::preload {
namespace {

// The runtime when this call is the application's and EMP is running.
Runtime* managing_runtime() noexcept {
  if (is_internal()) return nullptr;
  Runtime* rt = runtime();
  return rt && rt->active() ? rt : nullptr;
}

bool is_anonymous_private(int flags) noexcept {
  return (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE && !(flags & (MAP_GROWSDOWN | MAP_HUGETLB));
}

void* fail(int error) noexcept {
  errno = error;
  return MAP_FAILED;
}

// mimalloc asks for memory: a range of the heap arena (or, for MAP_FIXED over its own
// memory, a discard: the range reads zeros, as a fresh mapping would).
void* arena_mmap(Runtime& rt, void* addr, size_t length, int flags) noexcept {
  HeapArena& arena = *rt.arena();
  length = os::page_ceil(length);
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    if (!arena.contains(addr, length)) return fail(ENOMEM);
    if (rt.active()) {
      InternalScope scope;
      (void)rt.engine().discard_range(addr, length);
    } else {
      os::raw_madvise(addr, length, MADV_DONTNEED);
    }
    return addr;
  }
  void* p = arena.allocate(length);
  return p ? p : fail(ENOMEM);
}

void arena_munmap(Runtime& rt, void* addr, size_t length) noexcept {
  if (rt.active()) {
    InternalScope scope;
    (void)rt.engine().discard_range(addr, length);
  } else {
    os::raw_madvise(addr, length, MADV_DONTNEED);
  }
  rt.arena()->free(addr, length);
}

bool in_arena(Runtime& rt, const void* addr, size_t length) noexcept {
  return rt.arena() && rt.arena()->contains(addr, length);
}

// True for a MAP_SHARED mapping of a memfd or other shmem file (not hugetlbfs).
bool is_shared_memfd(int flags, int fd, struct stat* st) noexcept {
  struct statfs fs{};
  return (flags & MAP_TYPE) == MAP_SHARED && fd >= 0 && ::fstatfs(fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
         ::fstat(fd, st) == 0;
}

// emp-qemu: only QEMU's activation of the guest RAM is managed, a read-write MAP_FIXED
// mapping of exactly the announced size: anonymous private (plain -m, memory-backend-ram)
// or of a memfd (memory-backend-memfd). The TCG buffer, ROMs and the rest are not.
void* guest_ram_mmap(Runtime& rt, void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  bool activation = (flags & MAP_FIXED) && os::page_ceil(length) == rt.guest_ram_bytes() && prot == (PROT_READ | PROT_WRITE);
  struct stat st{};
  bool anonymous = is_anonymous_private(flags);
  bool memfd = !anonymous && activation && offset == 0 && is_shared_memfd(flags, fd, &st);
  if (!activation || (!anonymous && !memfd)) return os::raw_mmap(addr, length, prot, flags, fd, offset);
  void* p = os::raw_mmap(addr, length, prot, anonymous ? (flags & ~MAP_POPULATE) : flags, anonymous ? -1 : fd, offset);
  if (p == MAP_FAILED) return p;
  core::Engine& engine = rt.engine();
  // emp-qemu checked that the guest RAM fits in local DRAM plus the second tier; the
  // region takes tier space as blocks are evicted (a full up-front reservation would
  // also need the resident part, and the edge blocks of an unaligned mapping, in the tier).
  Status status = anonymous ? engine.adopt(p, os::page_ceil(length), /*reserve_pool=*/false)
                            : engine.adopt_shared(p, os::page_ceil(length), /*reserve_pool=*/false);
  if (!status) {
    // Never run the guest on unmanaged RAM behind the user's back.
    EMP_ERROR("preload", "cannot manage the guest RAM (%s mapping of %zu bytes): %s", anonymous ? "anonymous" : "memfd",
              length, status.to_string().c_str());
    os::raw_munmap(p, length);
    return fail(status.code() ? status.code() : ENOMEM);
  }
  if (memfd)
    rt.set_guest_memfd({fd, static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                        reinterpret_cast<uintptr_t>(p), os::page_ceil(length)});
  return p;
}

void* managed_mmap(Runtime& rt, void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  InternalScope scope;
  core::Engine& engine = rt.engine();
  bool replacing = (flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE);
  if (replacing && engine.overlaps(addr, length)) {
    if (in_arena(rt, addr, os::page_ceil(length))) return fail(EINVAL);  // the heap's own space
    (void)engine.forget_range(addr, os::page_ceil(length));
  }
  if (rt.guest_ram_bytes()) return guest_ram_mmap(rt, addr, length, prot, flags, fd, offset);
  if (!is_anonymous_private(flags)) return os::raw_mmap(addr, length, prot, flags, fd, offset);
  void* p = os::raw_mmap(addr, length, prot, flags & ~MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return p;
  Status status = engine.adopt(p, os::page_ceil(length), /*reserve_pool=*/true, /*may_defer=*/true);
  if (!status) {
    if (status.code() == ENOMEM) {
      os::raw_munmap(p, length);
      return fail(ENOMEM);
    }
    EMP_LOG_LIMITED(log::Level::kWarn, "preload", "mmap at %p left to the kernel: %s", p, status.to_string().c_str());
  }
  return p;
}

// munmap of managed memory outside the heap arena (munmap() handles the arena first).
int managed_munmap(Runtime& rt, void* addr, size_t length) noexcept {
  InternalScope scope;
  Status status = rt.engine().forget_range(addr, os::page_ceil(length));
  if (!status) EMP_LOG_LIMITED(log::Level::kWarn, "preload", "munmap(%p, %zu): %s", addr, length, status.to_string().c_str());
  return os::raw_munmap(addr, length);
}

// mremap of managed memory: grow in place when the neighbourhood is free, otherwise
// move into a new managed range by copying (faults bring evicted blocks in as needed).
void* managed_mremap(Runtime& rt, void* old_address, size_t old_size, size_t new_size, int flags, void* new_address) noexcept {
  InternalScope scope;
  core::Engine& engine = rt.engine();
  old_size = os::page_ceil(old_size);
  new_size = os::page_ceil(new_size);
  if (new_size == 0 || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) || in_arena(rt, old_address, 1))
    return fail(EINVAL);  // MREMAP_DONTUNMAP and the heap arena are not supported
  char* old_bytes = static_cast<char*>(old_address);
  if (!(flags & MREMAP_FIXED)) {
    if (new_size <= old_size) {
      if (new_size < old_size) {
        (void)engine.forget_range(old_bytes + new_size, old_size - new_size);
        os::raw_munmap(old_bytes + new_size, old_size - new_size);
      }
      return old_address;
    }
    void* tail = os::raw_mmap(old_bytes + old_size, new_size - old_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (tail != MAP_FAILED) {
      if (engine.adopt(tail, new_size - old_size, /*reserve_pool=*/true, /*may_defer=*/true)) return old_address;
      os::raw_munmap(tail, new_size - old_size);
      return fail(ENOMEM);
    }
    if (!(flags & MREMAP_MAYMOVE)) return fail(ENOMEM);
  }
  int map_flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (flags & MREMAP_FIXED) {
    map_flags |= MAP_FIXED;
    if (engine.overlaps(new_address, new_size)) (void)engine.forget_range(new_address, new_size);
  }
  // Memory the kernel still serves (a deferred region) moves in the page tables.
  if (auto moved = engine.remap_deferred(old_address, old_size, new_size, flags, new_address)) {
    if (!*moved) return fail(moved->status().code());
    return **moved;
  }
  void* target = os::raw_mmap((flags & MREMAP_FIXED) ? new_address : nullptr, new_size, PROT_READ | PROT_WRITE,
                              map_flags, -1, 0);
  if (target == MAP_FAILED) return target;
  if (!engine.adopt(target, new_size, /*reserve_pool=*/true, /*may_defer=*/true)) {
    os::raw_munmap(target, new_size);
    return fail(ENOMEM);
  }
  std::memcpy(target, old_address, std::min(old_size, new_size));
  (void)engine.forget_range(old_address, old_size);
  os::raw_munmap(old_address, old_size);
  return target;
}

struct InternalStart {
  void* (*routine)(void*);
  void* argument;
};

void* internal_thread_start(void* raw) {
  InternalStart start = *static_cast<InternalStart*>(raw);
  __libc_free(raw);
  thread_role().internal_thread = true;
  // The application's signals are for its own threads: a process-directed signal must not
  // run its handler on an EMP thread (or interrupt EMP's I/O waits there).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  return start.routine(start.argument);
}

}  // namespace
}  // namespace emp::preload

using namespace emp::preload;

extern "C" {

void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  if (length == 0) return fail(EINVAL);
  Runtime* rt = runtime();
  if (rt && rt->arena() && in_allocator() && (flags & MAP_ANONYMOUS)) return arena_mmap(*rt, addr, length, flags);
  if (Runtime* managing = managing_runtime()) {
    if (flags & MAP_FIXED)  // what was there (and its wipe-on-fork advice) is replaced
      managing->note_wipe_on_fork(reinterpret_cast<uintptr_t>(addr), emp::os::page_ceil(length), false);
    return managed_mmap(*managing, addr, length, prot, flags, fd, offset);
  }
  return emp::os::raw_mmap(addr, length, prot, flags, fd, offset);
}

void* mmap64(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return mmap(addr, length, prot, flags, fd, offset);
}

int munmap(void* addr, size_t length) {
  Runtime* rt = runtime();
  if (Runtime* managing = managing_runtime())
    managing->note_wipe_on_fork(reinterpret_cast<uintptr_t>(addr), emp::os::page_ceil(length), false);
  if (rt && in_arena(*rt, addr, emp::os::page_ceil(length))) {
    arena_munmap(*rt, addr, length);
    return 0;
  }
  if (Runtime* managing = managing_runtime(); managing && managing->engine().overlaps(addr, length))
    return managed_munmap(*managing, addr, length);
  return emp::os::raw_munmap(addr, length);
}

void* mremap(void* old_address, size_t old_size, size_t new_size, int flags, ...) {
  void* new_address = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list args;
    va_start(args, flags);
    new_address = va_arg(args, void*);
    va_end(args);
  }
  if (Runtime* managing = managing_runtime(); managing && managing->engine().overlaps(old_address, old_size ? old_size : 1))
    return managed_mremap(*managing, old_address, old_size, new_size, flags, new_address);
  long result = ::syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
  return result == -1 ? MAP_FAILED : reinterpret_cast<void*>(result);
}

int mprotect(void* addr, size_t length, int prot) {
  int result = emp::os::raw_mprotect(addr, length, prot);
  if (result == 0 && !(prot & PROT_READ)) {
    if (Runtime* rt = runtime(); rt && rt->active() && rt->engine().overlaps(addr, length)) {
      InternalScope scope;
      rt->engine().note_unreadable(addr, length);
    }
  }
  return result;
}

int madvise(void* addr, size_t length, int advice) {
  Runtime* rt = runtime();
  if (!rt || !rt->active() || !rt->engine().overlaps(addr, length)) return emp::os::raw_madvise(addr, length, advice);
  InternalScope scope;
  switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE: {
      // Zeros afterwards, and the DRAM and tier space back; parts outside EMP go to the kernel.
      emp::Status status = rt->engine().discard_range(addr, emp::os::page_ceil(length));
      struct Outside {
        int advice;
        int result;
      } outside{advice, 0};
      rt->engine().for_each_unmanaged_part(
          addr, emp::os::page_ceil(length),
          [](void* start, size_t bytes, void* context) {
            auto* o = static_cast<Outside*>(context);
            if (emp::os::raw_madvise(start, bytes, o->advice) != 0) o->result = -1;
          },
          &outside);
      if (!status) {
        errno = status.code();
        return -1;
      }
      return outside.result;
    }
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK: {
      int result = emp::os::raw_madvise(addr, length, advice);
      if (result == 0)
        rt->note_wipe_on_fork(reinterpret_cast<uintptr_t>(addr), emp::os::page_ceil(length), advice == MADV_WIPEONFORK);
      return result;
    }
    case MADV_HUGEPAGE:
    case MADV_NOHUGEPAGE:
    case MADV_MERGEABLE:
    case MADV_UNMERGEABLE:
      return 0;  // EMP maps managed memory itself, block by block
    default:
      return emp::os::raw_madvise(addr, length, advice);
  }
}

// QEMU discards memfd-backed guest RAM (virtio-balloon, free-page reporting) by punching
// holes in the memfd before its madvise: EMP discards the blocks instead, which punches
// the same holes without racing its own evictions. Everything else goes to the kernel.
int fallocate64(int fd, int mode, off_t offset, off_t length) {
  Runtime* rt = managing_runtime();
  const Runtime::GuestMemfd* memfd = rt ? rt->guest_memfd() : nullptr;
  struct stat st{};
  if (memfd && fd == memfd->fd && (mode & FALLOC_FL_PUNCH_HOLE) && offset >= 0 && length > 0 &&
      static_cast<uint64_t>(offset) + static_cast<uint64_t>(length) <= memfd->length && ::fstat(fd, &st) == 0 &&
      static_cast<uint64_t>(st.st_dev) == memfd->device && static_cast<uint64_t>(st.st_ino) == memfd->inode) {
    InternalScope scope;
    emp::Status status = rt->engine().discard_range(reinterpret_cast<void*>(memfd->base + static_cast<uintptr_t>(offset)),
                                               static_cast<size_t>(length));
    if (!status) {
      errno = status.code() ? status.code() : EIO;
      return -1;
    }
    return 0;
  }
  return static_cast<int>(::syscall(SYS_fallocate, fd, mode, offset, length));
}

int fallocate(int fd, int mode, off_t offset, off_t length) { return fallocate64(fd, mode, offset, length); }

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*routine)(void*), void* argument) {
  using Fn = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static Fn real = reinterpret_cast<Fn>(dlsym_next("pthread_create"));
  if (!real) return EAGAIN;
  if (!is_internal()) return real(thread, attr, routine, argument);
  // EMP's threads (and the transport's, started from EMP code) stay internal.
  auto* start = static_cast<InternalStart*>(__libc_malloc(sizeof(InternalStart)));
  if (!start) return EAGAIN;
  *start = InternalStart{routine, argument};
  int result = real(thread, attr, internal_thread_start, start);
  if (result != 0) __libc_free(start);
  return result;
}

pid_t fork(void) {
  using Fn = pid_t (*)();
  static Fn real = reinterpret_cast<Fn>(dlsym_next("fork"));
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  Runtime* rt = managing_runtime();
  if (rt && !rt->prepare_fork()) {
    errno = ENOMEM;
    return -1;
  }
  return real();
}

}  // extern "C"
