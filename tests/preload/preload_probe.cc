// emp-preload-probe: a plain program (it knows nothing of EMP) that exercises what a
// program may do with its memory, for the preload tests to run under libemp.so with a
// small DRAM budget. Each scenario checks every byte it wrote (patterns derived from the
// address and a seed) and prints "OK <scenario>" or "FAIL <scenario>: <what>" (exit 1).
//
//   emp-preload-probe <scenario> [MiB]     scenarios: threads fork munmap mremap madvise
//                                          realloc mappings protect heap daemon forkcopy
//                                          remap vmasplit forksignal
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <barrier>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

size_t malloc_usable_size_probe();

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kMiB = 1 << 20;
const char* g_scenario = "";

[[noreturn]] void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
void fail(const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  std::printf("FAIL %s: %s\n", g_scenario, text);
  std::fflush(stdout);
  std::_Exit(1);
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}
// The pattern of a word depends on its offset from `origin` (the start of the buffer it
// was written in), so data that moves (mremap) keeps its pattern.
uint64_t pattern(const void* where, const void* origin, uint64_t seed) {
  return mix(static_cast<uint64_t>(static_cast<const char*>(where) - static_cast<const char*>(origin)) ^
             (seed * 0x9e3779b97f4a7c15ULL));
}

void fill(void* start, size_t bytes, uint64_t seed, const void* origin = nullptr) {
  if (!origin) origin = start;
  auto* words = static_cast<uint64_t*>(start);
  for (size_t i = 0; i < bytes / 8; ++i) words[i] = pattern(&words[i], origin, seed);
}
// Returns the first mismatching word, or nullptr.
const uint64_t* check(const void* start, size_t bytes, uint64_t seed, const void* origin = nullptr) {
  if (!origin) origin = start;
  auto* words = static_cast<const uint64_t*>(start);
  for (size_t i = 0; i < bytes / 8; ++i)
    if (words[i] != pattern(&words[i], origin, seed)) return &words[i];
  return nullptr;
}
void expect_pattern(const void* start, size_t bytes, uint64_t seed, const char* what, const void* origin = nullptr) {
  if (!origin) origin = start;
  if (const uint64_t* bad = check(start, bytes, seed, origin))
    fail("%s: word at %p (offset %zu) is %#lx, expected %#lx", what, static_cast<const void*>(bad),
         static_cast<size_t>(reinterpret_cast<const char*>(bad) - static_cast<const char*>(start)), *bad,
         pattern(bad, origin, seed));
}
void expect_zero(const void* start, size_t bytes, const char* what) {
  auto* b = static_cast<const unsigned char*>(start);
  for (size_t i = 0; i < bytes; ++i)
    if (b[i]) fail("%s: byte at offset %zu is %#x, expected zero", what, i, b[i]);
}

void* map_anonymous(size_t bytes, int prot = PROT_READ | PROT_WRITE, int flags = MAP_PRIVATE) {
  void* p = mmap(nullptr, bytes, prot, flags | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("mmap(%zu): %s", bytes, std::strerror(errno));
  return p;
}

// Touches `bytes` of fresh memory so that earlier data is pushed out of local DRAM.
void push_out(size_t bytes) {
  char* p = static_cast<char*>(map_anonymous(bytes));
  for (size_t i = 0; i < bytes; i += kPage) p[i] = 1;
  munmap(p, bytes);
}

bool is_mapped(const void* p, size_t bytes) {
  return msync(const_cast<void*>(p), bytes, MS_ASYNC) == 0;  // ENOMEM when unmapped
}

// --- scenarios ---------------------------------------------------------------------

// Many threads write stripes of one shared heap buffer and read each other's.
void scenario_threads(size_t mib) {
  const unsigned threads = 8;
  size_t bytes = mib * kMiB;
  auto* buffer = static_cast<uint64_t*>(std::malloc(bytes));
  if (!buffer) fail("malloc(%zu)", bytes);
  size_t stripe_words = bytes / 8 / threads;
  std::barrier sync(threads);
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      uint64_t* mine = buffer + t * stripe_words;
      fill(mine, stripe_words * 8, 1);
      sync.arrive_and_wait();
      std::mt19937_64 rng(t);
      for (int i = 0; i < 5000; ++i) {
        size_t word = rng() % (stripe_words * threads);
        if (buffer[word] != pattern(&buffer[word], buffer + (word / stripe_words) * stripe_words, 1)) failures.fetch_add(1);
      }
      sync.arrive_and_wait();
      fill(mine, stripe_words * 8, 2);
      sync.arrive_and_wait();
      for (unsigned s = 0; s < threads; ++s)
        if (check(buffer + s * stripe_words, stripe_words * 8, 2)) failures.fetch_add(1);
    });
  }
  for (auto& w : workers) w.join();
  if (failures) fail("%d mismatches between threads", failures.load());
  std::free(buffer);
}

// fork(): private memory (heap and mmap, some of it evicted before the fork) is
// copy-on-write, shared memory stays shared, wipe-on-fork memory reads zeros in the child,
// and parent and child both keep faulting and evicting.
void scenario_fork(size_t mib) {
  size_t bytes = mib * kMiB;
  char* heap = static_cast<char*>(std::malloc(bytes));
  char* priv = static_cast<char*>(map_anonymous(bytes));
  char* shared = static_cast<char*>(map_anonymous(4 * kMiB, PROT_READ | PROT_WRITE, MAP_SHARED));
  char* wipe = static_cast<char*>(map_anonymous(4 * kMiB));
  if (!heap) fail("malloc");
  fill(heap, bytes, 11);
  fill(priv, bytes, 12);
  fill(shared, 4 * kMiB, 13);
  fill(wipe, 4 * kMiB, 14);
  if (madvise(wipe, 4 * kMiB, MADV_WIPEONFORK) != 0) fail("MADV_WIPEONFORK: %s", std::strerror(errno));
  push_out(2 * bytes);  // most of heap and priv are now in the second tier
  pid_t child = fork();
  if (child < 0) fail("fork: %s", std::strerror(errno));
  if (child == 0) {
    g_scenario = "fork (child)";
    expect_pattern(heap, bytes, 11, "child reads the heap");
    expect_pattern(priv, bytes, 12, "child reads private memory");
    expect_pattern(shared, 4 * kMiB, 13, "child reads shared memory");
    expect_zero(wipe, 4 * kMiB, "child reads wipe-on-fork memory");
    fill(priv, bytes, 21);  // the child's own copy
    fill(shared, 4 * kMiB, 23);
    push_out(2 * bytes);
    expect_pattern(priv, bytes, 21, "child reads back its own writes");
    std::fflush(stdout);
    std::_Exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) fail("waitpid: %s", std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child ended with status %#x", status);
  expect_pattern(heap, bytes, 11, "parent's heap after the child wrote its copy");
  expect_pattern(priv, bytes, 12, "parent's private memory after the child wrote its copy");
  expect_pattern(shared, 4 * kMiB, 23, "parent sees the child's writes to shared memory");
  expect_pattern(wipe, 4 * kMiB, 14, "parent keeps its wipe-on-fork memory");
  fill(priv, bytes, 31);
  push_out(2 * bytes);
  expect_pattern(priv, bytes, 31, "parent keeps faulting and evicting after fork");
  // fork + exec stays cheap and works.
  pid_t exec_child = fork();
  if (exec_child == 0) {
    execl("/bin/true", "true", nullptr);
    std::_Exit(127);
  }
  if (waitpid(exec_child, &status, 0) != exec_child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("fork+exec of /bin/true: status %#x", status);
}

// stress-ng's mmap pattern: a mapping unmapped page by page, then mapped back page by
// page with MAP_FIXED at the same addresses, written, pushed out and read back. EMP's own
// bookkeeping must never sit in the holes the program maps into again.
void scenario_remap(size_t mib) {
  size_t bytes = mib * kMiB, pages = bytes / kPage;
  char* p = static_cast<char*>(map_anonymous(bytes));
  fill(p, bytes, 71);
  push_out(2 * bytes);
  std::vector<size_t> order(pages);
  for (size_t i = 0; i < pages; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  for (size_t n = 0; n < pages; ++n) {
    size_t page = order[n];
    if (munmap(p + page * kPage, kPage) != 0) fail("munmap of page %zu: %s", page, std::strerror(errno));
    if (n % 64 == 0 && page + 1 < pages && std::find(order.begin(), order.begin() + n, page + 1) == order.begin() + n)
      expect_pattern(p + (page + 1) * kPage, kPage, 71, "a page beside one just unmapped", p);
  }
  std::shuffle(order.begin(), order.end(), std::mt19937_64(8));
  for (size_t page : order) {
    void* q = mmap(p + page * kPage, kPage, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q != p + page * kPage) fail("mmap(MAP_FIXED) of page %zu: %s", page, std::strerror(errno));
    expect_zero(q, kPage, "a page mapped again");
    fill(q, kPage, 72, p);
  }
  push_out(2 * bytes);
  expect_pattern(p, bytes, 72, "pages mapped again one by one, after eviction");
  for (size_t page = 0; page < pages; ++page) munmap(p + page * kPage, kPage);
}

// madvise of single pages splits a mapping into many kernel VMAs (MADV_DONTDUMP here),
// so a block's range spans several: its data must still come back whole, and blocks
// cut by munmap there too.
void scenario_vmasplit(size_t mib) {
  size_t bytes = mib * kMiB;
  char* p = static_cast<char*>(map_anonymous(bytes));
  fill(p, bytes, 81);
  push_out(2 * bytes);
  for (size_t offset = kPage; offset < bytes; offset += 4 * kPage)
    if (madvise(p + offset, kPage, MADV_DONTDUMP) != 0) fail("MADV_DONTDUMP: %s", std::strerror(errno));
  expect_pattern(p, bytes, 81, "memory split into many mappings, read back after eviction");
  fill(p, bytes, 82);
  push_out(2 * bytes);
  for (size_t offset = 6 * kPage; offset + kPage < bytes; offset += 64 * kPage)
    if (munmap(p + offset, kPage) != 0) fail("munmap: %s", std::strerror(errno));
  for (size_t offset = 0; offset < bytes; offset += kPage)
    if ((offset / kPage) % 64 != 6 || offset < 6 * kPage || offset + kPage >= bytes)
      expect_pattern(p + offset, kPage, 82, "a page beside holes in split mappings", p);
}

// Signals racing fork(): the alternate signal stack is managed memory that has been
// evicted, another thread keeps signalling the whole process group, and the main thread
// forks children that read the parent's data. Every child must exit in time: a
// signal's frame must not land on managed memory before the child's engine serves
// faults, and glibc's pthread_create in the child (it reuses the stack of a thread the
// child does not have and clears that thread's TLS bookkeeping on the program's heap)
// must find a fault thread there.
volatile sig_atomic_t g_signals = 0;
volatile sig_atomic_t g_signals_on_emp_threads = 0;
char g_program_comm[16];  // this program's threads keep its name; EMP's are named emp-…
void read_comm(const char* path, char* name) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = ::read(fd, name, 15);
  if (n > 0) name[n] = 0;
  ::close(fd);
}
// Counts the signal, and whether it ran on one of EMP's threads, where the program's
// handlers must never run. open/read/close are async-signal-safe.
void count_signal(int) {
  g_signals = g_signals + 1;
  int saved = errno;
  char name[16] = {};
  read_comm("/proc/thread-self/comm", name);
  if (std::strncmp(name, "emp-", 4) == 0 && std::strcmp(name, g_program_comm) != 0)
    g_signals_on_emp_threads = g_signals_on_emp_threads + 1;
  errno = saved;
}

void scenario_forksignal(size_t mib) {
  size_t bytes = mib * kMiB;
  if (setpgid(0, 0) != 0) fail("setpgid: %s", std::strerror(errno));  // signal only this process and its children
  read_comm("/proc/self/comm", g_program_comm);
  char* alternate = static_cast<char*>(map_anonymous(256 * 1024));
  std::memset(alternate, 0, 256 * 1024);
  stack_t stack{};
  stack.ss_sp = alternate;
  stack.ss_size = 256 * 1024;
  if (sigaltstack(&stack, nullptr) != 0) fail("sigaltstack: %s", std::strerror(errno));
  struct sigaction action {};
  action.sa_handler = count_signal;
  action.sa_flags = SA_ONSTACK | SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  char* data = static_cast<char*>(map_anonymous(bytes));
  fill(data, bytes, 91);
  std::atomic<bool> stop{false};
  std::thread signaller([&] {
    while (!stop.load()) {
      kill(0, SIGUSR1);
      usleep(200);
    }
  });
  for (int round = 0; round < 100; ++round) {
    push_out(2 * bytes);  // the alternate stack and the data are in the second tier again
    pid_t child = fork();
    if (child < 0) fail("fork: %s", std::strerror(errno));
    if (child == 0) {
      expect_pattern(data, bytes, 91, "the child reads its parent's data");
      std::_Exit(0);
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (waitpid(child, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(child, SIGKILL);
        stop = true;
        signaller.join();
        fail("child %d of round %d did not exit within 30 s", static_cast<int>(child), round);
      }
      usleep(1000);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child ended with status %#x", status);
  }
  stop = true;
  signaller.join();
  stack.ss_flags = SS_DISABLE;
  sigaltstack(&stack, nullptr);
  if (g_signals == 0) fail("no signal arrived");
  if (g_signals_on_emp_threads != 0)
    fail("%d of %d signals ran the program's handler on an EMP thread", static_cast<int>(g_signals_on_emp_threads),
         static_cast<int>(g_signals));
}

// Waits until process `pid` has exited (gone, or a zombie: its memory and descriptors
// are released by then).
void wait_until_gone(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  for (int i = 0; i < 60000; ++i) {
    FILE* file = std::fopen(path, "r");
    if (!file) return;
    char line[512] = {};
    bool zombie = std::fgets(line, sizeof line, file) && std::strstr(line, ") Z ");
    std::fclose(file);
    if (zombie) return;
    usleep(1000);
  }
  fail("process %d did not exit", static_cast<int>(pid));
}

// A double-forking daemon: memory (heap and mmap) evicted before the forks, the parent
// and the middle process exit at once, and the daemon — after both are gone — reads
// every byte, then keeps writing and evicting on its own. Prints "OK daemon" from the
// daemon (the parent and the middle process print nothing).
void scenario_daemon(size_t mib) {
  size_t bytes = mib * kMiB;
  char* heap = static_cast<char*>(std::malloc(bytes));
  char* priv = static_cast<char*>(map_anonymous(bytes));
  if (!heap) fail("malloc");
  fill(heap, bytes, 41);
  fill(priv, bytes, 42);
  push_out(2 * bytes);
  const pid_t parent = getpid();
  pid_t middle = fork();
  if (middle < 0) fail("fork: %s", std::strerror(errno));
  if (middle > 0) std::exit(0);  // the parent returns to its shell at once
  g_scenario = "daemon (middle)";
  if (setsid() < 0) fail("setsid: %s", std::strerror(errno));
  pid_t daemon = fork();
  if (daemon < 0) fail("fork: %s", std::strerror(errno));
  if (daemon > 0) std::_Exit(0);
  g_scenario = "daemon";
  wait_until_gone(parent);
  wait_until_gone(middle);
  expect_pattern(heap, bytes, 41, "the daemon reads the heap evicted before the forks");
  expect_pattern(priv, bytes, 42, "the daemon reads private memory evicted before the forks");
  fill(priv, bytes, 43);
  push_out(2 * bytes);
  expect_pattern(priv, bytes, 43, "the daemon reads back what it evicted itself");
  expect_pattern(heap, bytes, 41, "the daemon's heap after its own evictions");
}

// Peak resident memory of this process (VmHWM), in MiB.
size_t peak_rss_mib() {
  FILE* file = std::fopen("/proc/self/status", "r");
  if (!file) return 0;
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof line, file))
    if (std::sscanf(line, "VmHWM: %zu kB", &kib) == 1) break;
  std::fclose(file);
  return kib / 1024;
}

// A child that rewrites all of its copy of a private mapping. Under EMP the child's copy
// needs second-tier space of its own: fork() either gives it (the child rewrites,
// checks and prints its peak RSS) or fails with ENOMEM (prints "fork: ENOMEM"; the
// parent's memory is untouched either way).
void scenario_forkcopy(size_t mib) {
  size_t bytes = mib * kMiB;
  char* priv = static_cast<char*>(map_anonymous(bytes));
  fill(priv, bytes, 61);
  pid_t child = fork();
  if (child < 0) {
    if (errno != ENOMEM) fail("fork: %s", std::strerror(errno));
    std::printf("fork: ENOMEM\n");
  } else if (child == 0) {
    g_scenario = "forkcopy (child)";
    expect_pattern(priv, bytes, 61, "the child reads its parent's data");
    fill(priv, bytes, 62);
    expect_pattern(priv, bytes, 62, "the child reads back its own copy");
    std::printf("child peak RSS %zu MiB\n", peak_rss_mib());
    std::fflush(stdout);
    std::_Exit(0);
  } else {
    int status = 0;
    if (waitpid(child, &status, 0) != child) fail("waitpid: %s", std::strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child ended with status %#x", status);
  }
  expect_pattern(priv, bytes, 61, "the parent's copy after the fork");
}

// munmap of parts of a region: whole blocks, pages inside a block, the head and the tail;
// the rest keeps its data, the holes are gone, and a new mapping in a hole reads zeros.
void scenario_munmap(size_t mib) {
  size_t bytes = mib * kMiB;
  char* p = static_cast<char*>(map_anonymous(bytes));
  fill(p, bytes, 3);
  push_out(2 * bytes);
  struct Hole {
    size_t offset, length;
  };
  const Hole holes[] = {{0, 3 * kPage},                      // head, inside the first block
                        {bytes / 2 + 5 * kPage, 3 * kPage},   // pages inside a block
                        {bytes / 4, 4 * kMiB},                // whole blocks
                        {bytes - 7 * kPage, 7 * kPage}};      // tail
  for (const Hole& h : holes)
    if (munmap(p + h.offset, h.length) != 0) fail("munmap(+%zu, %zu): %s", h.offset, h.length, std::strerror(errno));
  std::vector<bool> gone(bytes / kPage);
  for (const Hole& h : holes)
    for (size_t i = h.offset / kPage; i < (h.offset + h.length) / kPage; ++i) gone[i] = true;
  for (size_t page = 0; page < bytes / kPage; ++page) {
    char* at = p + page * kPage;
    if (gone[page]) {
      if (is_mapped(at, kPage)) fail("page at offset %zu still mapped after munmap", page * kPage);
    } else {
      expect_pattern(at, kPage, 3, "data next to the unmapped holes", p);
    }
  }
  push_out(2 * bytes);  // evict the pieces and read them again
  for (size_t page = 0; page < bytes / kPage; ++page)
    if (!gone[page]) expect_pattern(p + page * kPage, kPage, 3, "data next to the holes, after eviction", p);
  const Hole& hole = holes[1];
  void* again = mmap(p + hole.offset, hole.length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (again != p + hole.offset) fail("mmap into the hole: %s", std::strerror(errno));
  expect_zero(again, hole.length, "a new mapping in a hole");
  fill(again, hole.length, 4);
  push_out(2 * bytes);
  expect_pattern(again, hole.length, 4, "the new mapping after eviction");
  expect_pattern(p + hole.offset + hole.length, kPage, 3, "its neighbour after eviction", p);
  // Unmap everything that is left, in one call spanning the holes.
  if (munmap(p, bytes) != 0) fail("munmap of the whole range: %s", std::strerror(errno));
}

void scenario_mremap(size_t mib) {
  size_t bytes = mib * kMiB;
  char* p = static_cast<char*>(map_anonymous(bytes));
  fill(p, bytes, 5);
  push_out(2 * bytes);
  // Grow (in place or moved).
  char* grown = static_cast<char*>(mremap(p, bytes, 2 * bytes, MREMAP_MAYMOVE));
  if (grown == MAP_FAILED) fail("mremap grow: %s", std::strerror(errno));
  expect_pattern(grown, bytes, 5, "old contents after growing");
  expect_zero(grown + bytes, kPage * 16, "the grown part");
  fill(grown + bytes, bytes, 6);
  push_out(2 * bytes);
  expect_pattern(grown + bytes, bytes, 6, "the grown part after eviction");
  // Shrink.
  char* shrunk = static_cast<char*>(mremap(grown, 2 * bytes, bytes / 2 + 3 * kPage, 0));
  if (shrunk != grown) fail("mremap shrink: %s", std::strerror(errno));
  if (is_mapped(shrunk + bytes / 2 + 3 * kPage, kPage)) fail("the tail is still mapped after shrinking");
  expect_pattern(shrunk, bytes / 2 + 3 * kPage, 5, "contents after shrinking");
  // Move to a chosen address.
  size_t length = bytes / 2 + 3 * kPage;
  char* target = static_cast<char*>(map_anonymous(length));
  char* moved = static_cast<char*>(mremap(shrunk, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, target));
  if (moved != target) fail("mremap move: %s", std::strerror(errno));
  if (is_mapped(shrunk, kPage)) fail("the old range is still mapped after moving");
  expect_pattern(moved, length, 5, "contents after moving");
  push_out(2 * bytes);
  expect_pattern(moved, length, 5, "moved contents after eviction");
  munmap(moved, length);
}

void scenario_madvise(size_t mib) {
  size_t bytes = mib * kMiB;
  char* p = static_cast<char*>(map_anonymous(bytes));
  fill(p, bytes, 7);
  push_out(2 * bytes);
  const size_t whole = bytes / 4, partial = bytes / 2 + 3 * kPage;
  if (madvise(p + whole, 2 * kMiB, MADV_DONTNEED) != 0) fail("madvise whole blocks: %s", std::strerror(errno));
  if (madvise(p + partial, 5 * kPage, MADV_DONTNEED) != 0) fail("madvise pages: %s", std::strerror(errno));
  expect_zero(p + whole, 2 * kMiB, "whole blocks after MADV_DONTNEED");
  expect_zero(p + partial, 5 * kPage, "pages after MADV_DONTNEED");
  expect_pattern(p, whole, 7, "data before the discarded range");
  expect_pattern(p + whole + 2 * kMiB, partial - whole - 2 * kMiB, 7, "data between the ranges", p);
  expect_pattern(p + partial + 5 * kPage, bytes - partial - 5 * kPage, 7, "data after the ranges", p);
  push_out(2 * bytes);
  expect_zero(p + partial, 5 * kPage, "discarded pages after eviction");
  expect_pattern(p + partial + 5 * kPage, kPage, 7, "their neighbour after eviction", p);
  if (madvise(p, bytes, MADV_WILLNEED) != 0 || madvise(p, bytes, MADV_HUGEPAGE) != 0)
    fail("harmless advice failed: %s", std::strerror(errno));
  // One call over managed memory and a neighbouring mapping the kernel keeps
  // (MAP_GROWSDOWN stays unmanaged): both read zeros afterwards.
  char* tail = p + bytes - kMiB;
  if (mmap(tail, kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0) != tail)
    fail("mmap MAP_GROWSDOWN over the tail: %s", std::strerror(errno));
  fill(tail, kMiB, 8);
  if (madvise(p + bytes - 2 * kMiB, 2 * kMiB, MADV_DONTNEED) != 0) fail("madvise across mappings: %s", std::strerror(errno));
  expect_zero(p + bytes - 2 * kMiB, 2 * kMiB, "managed and kernel memory after one MADV_DONTNEED");
  munmap(p, bytes);
}

// realloc chains: grow one block from 16 bytes to many MiB and back, checking contents.
void scenario_realloc(size_t mib) {
  size_t limit = mib * kMiB;
  size_t size = 16;
  auto* p = static_cast<unsigned char*>(std::malloc(size));
  for (size_t i = 0; i < size; ++i) p[i] = static_cast<unsigned char>(mix(i));
  for (; size * 2 <= limit; size *= 2) {
    p = static_cast<unsigned char*>(std::realloc(p, size * 2));
    if (!p) fail("realloc to %zu", size * 2);
    for (size_t i = 0; i < size; ++i)
      if (p[i] != static_cast<unsigned char>(mix(i))) fail("byte %zu lost when growing to %zu", i, size * 2);
    for (size_t i = size; i < size * 2; ++i) p[i] = static_cast<unsigned char>(mix(i));
  }
  push_out(limit);
  for (; size >= 16; size /= 3) {
    p = static_cast<unsigned char*>(std::realloc(p, size));
    for (size_t i = 0; i < size; ++i)
      if (p[i] != static_cast<unsigned char>(mix(i))) fail("byte %zu lost when shrinking to %zu", i, size);
  }
  std::free(p);
  // Many small allocations of every size class, and C++ containers.
  std::vector<std::unique_ptr<std::string>> strings;
  for (int i = 0; i < 200000; ++i) strings.push_back(std::make_unique<std::string>(static_cast<size_t>(i % 700), 'a' + i % 26));
  push_out(limit);
  for (int i = 0; i < 200000; ++i)
    if (strings[i]->size() != static_cast<size_t>(i % 700) || (i % 700 && (*strings[i])[0] != 'a' + i % 26))
      fail("string %d changed", i);
  void* aligned = nullptr;
  if (posix_memalign(&aligned, 1 << 16, 100000) != 0 || reinterpret_cast<uintptr_t>(aligned) % (1 << 16))
    fail("posix_memalign");
  std::free(aligned);
  if (malloc_usable_size_probe() < 100) fail("malloc_usable_size");
}

// 10,000 small mappings of different sizes, half unmapped, the rest checked.
void scenario_mappings(size_t) {
  const int count = 10000;
  std::vector<std::pair<char*, size_t>> maps;
  for (int i = 0; i < count; ++i) {
    size_t length = kPage * (1 + i % 16);
    char* p = static_cast<char*>(map_anonymous(length));
    fill(p, length, 100 + i);
    maps.emplace_back(p, length);
  }
  push_out(128 * kMiB);
  for (int i = 0; i < count; i += 2) {
    if (munmap(maps[i].first, maps[i].second) != 0) fail("munmap #%d: %s", i, std::strerror(errno));
  }
  for (int i = 1; i < count; i += 2) expect_pattern(maps[i].first, maps[i].second, 100 + i, "a small mapping");
  for (int i = 1; i < count; i += 2) munmap(maps[i].first, maps[i].second);
}

// PROT_NONE reservations made accessible later, and data made unreadable while it is
// resident or evicted, then readable again.
void scenario_protect(size_t mib) {
  size_t bytes = mib * kMiB;
  char* p = static_cast<char*>(map_anonymous(bytes, PROT_NONE));
  if (mprotect(p, bytes / 2, PROT_READ | PROT_WRITE) != 0) fail("mprotect RW: %s", std::strerror(errno));
  fill(p, bytes / 2, 9);
  if (mprotect(p, bytes / 4, PROT_NONE) != 0) fail("mprotect NONE: %s", std::strerror(errno));
  push_out(2 * bytes);  // evicts blocks the program cannot read itself
  if (mprotect(p, bytes / 4, PROT_READ) != 0) fail("mprotect R: %s", std::strerror(errno));
  expect_pattern(p, bytes / 2, 9, "data made unreadable, evicted and readable again");
  if (mprotect(p + bytes / 2, bytes / 2, PROT_READ | PROT_WRITE) != 0) fail("mprotect RW 2: %s", std::strerror(errno));
  expect_zero(p + bytes / 2, kPage * 4, "the rest of the reservation");
  munmap(p, bytes);
}

// A heap larger than local DRAM through malloc of mixed sizes.
void scenario_heap(size_t mib) {
  std::vector<std::pair<uint64_t*, size_t>> blocks;
  size_t total = 0;
  std::mt19937_64 rng(42);
  while (total < mib * kMiB) {
    size_t words = 1 + rng() % (rng() % 8 == 0 ? 100000 : 200);
    auto* p = static_cast<uint64_t*>(std::malloc(words * 8));
    if (!p) fail("malloc");
    fill(p, words * 8, 50);
    blocks.emplace_back(p, words);
    total += words * 8;
  }
  for (auto& [p, words] : blocks) expect_pattern(p, words * 8, 50, "a heap block");
  for (auto& [p, words] : blocks) std::free(p);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s threads|fork|munmap|mremap|madvise|realloc|mappings|protect|heap|daemon|forkcopy|remap|vmasplit|forksignal [MiB]\n", argv[0]);
    return 2;
  }
  const std::map<std::string, std::function<void(size_t)>> scenarios = {
      {"threads", scenario_threads}, {"fork", scenario_fork},         {"munmap", scenario_munmap},
      {"mremap", scenario_mremap},   {"madvise", scenario_madvise},   {"realloc", scenario_realloc},
      {"mappings", scenario_mappings}, {"protect", scenario_protect}, {"heap", scenario_heap},
      {"daemon", scenario_daemon},     {"forkcopy", scenario_forkcopy}, {"remap", scenario_remap},
      {"vmasplit", scenario_vmasplit}, {"forksignal", scenario_forksignal}};
  auto it = scenarios.find(argv[1]);
  if (it == scenarios.end()) {
    std::fprintf(stderr, "unknown scenario '%s'\n", argv[1]);
    return 2;
  }
  g_scenario = argv[1];
  size_t mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
  it->second(mib);
  std::printf("OK %s\n", argv[1]);
  return 0;
}

#include <malloc.h>
size_t malloc_usable_size_probe() {
  void* p = std::malloc(100);
  size_t n = malloc_usable_size(p);
  std::free(p);
  return n;
}
