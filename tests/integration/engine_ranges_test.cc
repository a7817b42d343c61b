// Engine range operations and fork, driven directly (libemp.so drives them from munmap,
// madvise and pthread_atfork; these tests also run under the sanitizer presets, where the
// preload tests cannot): a partial munmap splits a region, a discard reads zeros, and a
// forked child continues on its own engine over its own pool, reading the parent's
// evicted data from the tier and evicting into the share its parent gave it.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os/raw_syscalls.h"
#include "testing/engine_fixture.h"
#include "testing/patterns.h"
#include "tier/fork_watch.h"
#include "tier/memory_tier.h"

namespace emp::testing {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kMiB = 1 << 20;

// Evicts (nearly) everything by touching `bytes` of other managed memory.
void push_out(core::Engine& engine, size_t bytes) {
  auto other = engine.map(bytes);
  ASSERT_TRUE(other);
  for (size_t i = 0; i < bytes; i += kPage) static_cast<char*>(*other)[i] = 1;
  ASSERT_TRUE(engine.release(*other));
}

size_t word_of(size_t byte) { return byte / 8; }

// An engine with 2 MiB of local DRAM over a file tier, and 8 MiB of managed memory
// filled with pattern version 1 and then pushed out to the second tier.
class EngineRanges : public ::testing::Test {
 protected:
  static constexpr size_t kBytes = 8 * kMiB;
  void SetUp() override {
    EngineSetup setup;
    setup.tier = TierKind::kFile;
    setup.budget = 2 * kMiB;
    std::string skip;
    engine_ = make_engine(setup, &skip, &files_.files);
    if (!engine_) GTEST_SKIP() << skip;
    base_ = static_cast<char*>(os::raw_mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(base_, MAP_FAILED);
    ASSERT_TRUE(engine_->adopt(base_, kBytes));
    words_ = reinterpret_cast<uint64_t*>(base_);
    fill_words(words_, 0, kBytes / 8, 1);
    push_out(*engine_, 4 * kMiB);
  }
  TempFiles files_;
  std::unique_ptr<core::Engine> engine_;
  char* base_ = nullptr;
  uint64_t* words_ = nullptr;
};

TEST_F(EngineRanges, PartialUnmapSplitsARegionAndKeepsTheRest) {
  auto& engine = engine_;
  const size_t bytes = kBytes;
  void* raw = base_;
  uint64_t* words = words_;
  struct Cut {
    size_t offset, length;
  };
  // Pages inside one block, whole blocks, the head and the tail.
  const Cut cuts[] = {{bytes / 2 + 5 * kPage, 3 * kPage}, {bytes / 4, kMiB}, {0, 2 * kPage}, {bytes - kPage, kPage}};
  for (const Cut& cut : cuts) {
    char* at = static_cast<char*>(raw) + cut.offset;
    ASSERT_TRUE(engine->forget_range(at, cut.length));
    ASSERT_EQ(os::raw_munmap(at, cut.length), 0);
  }
  auto kept = [&](size_t byte) {
    for (const Cut& cut : cuts)
      if (byte >= cut.offset && byte < cut.offset + cut.length) return false;
    return true;
  };
  for (int round = 0; round < 2; ++round) {
    for (size_t page = 0; page < bytes; page += kPage) {
      if (!kept(page)) continue;
      ASSERT_EQ(check_words(words, word_of(page), kPage / 8, 1), SIZE_MAX) << "page at " << page << ", round " << round;
    }
    push_out(*engine, 4 * kMiB);
  }
  EXPECT_LE(engine->resident(), engine->budget() + engine->slack());
  // What is left goes too; the pool's reservations come back.
  for (size_t page = 0; page < bytes; page += kPage)
    if (kept(page)) {
      ASSERT_TRUE(engine->forget_range(static_cast<char*>(raw) + page, kPage));
      os::raw_munmap(static_cast<char*>(raw) + page, kPage);
    }
  EXPECT_EQ(engine->stats().regions, 0u);
  EXPECT_EQ(engine->pool().reserved(), 0u);
}

TEST_F(EngineRanges, DiscardReadsZerosAndLeavesTheRest) {
  auto& engine = engine_;
  const size_t bytes = kBytes;
  uint64_t* words = words_;
  char* base = base_;
  const size_t whole = 2 * kMiB, part = 5 * kMiB + 3 * kPage;
  ASSERT_TRUE(engine->discard_range(base + whole, kMiB));
  ASSERT_TRUE(engine->discard_range(base + part, 2 * kPage));
  for (int round = 0; round < 2; ++round) {
    for (size_t byte = whole; byte < whole + kMiB; ++byte) ASSERT_EQ(base[byte], 0) << byte;
    for (size_t byte = part; byte < part + 2 * kPage; ++byte) ASSERT_EQ(base[byte], 0) << byte;
    EXPECT_EQ(check_words(words, 0, word_of(whole), 1), SIZE_MAX);
    EXPECT_EQ(check_words(words, word_of(whole + kMiB), word_of(part - whole - kMiB), 1), SIZE_MAX);
    EXPECT_EQ(check_words(words, word_of(part + 2 * kPage), word_of(bytes - part - 2 * kPage), 1), SIZE_MAX);
    push_out(*engine, 4 * kMiB);
  }
  ASSERT_TRUE(engine->release(base));
}

// A mapping that fits in the free budget is deferred: the kernel serves its pages and
// EMP sees no fault. Split by munmap, partly discarded and moved by mremap while deferred,
// it is taken over when other memory needs the budget, and every byte the kernel held
// (including pages of partly touched blocks) survives eviction and comes back.
TEST(EngineDeferred, KernelServedRegionIsTakenOverWhenTheBudgetNeedsItAndLosesNothing) {
  EngineSetup setup;
  setup.tier = TierKind::kFile;
  setup.budget = 16 * kMiB;
  std::string skip;
  TempFiles files;
  auto engine = make_engine(setup, &skip, &files.files);
  if (!engine) GTEST_SKIP() << skip;
  const size_t bytes = 4 * kMiB;
  char* base = static_cast<char*>(os::raw_mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(base, MAP_FAILED);
  ASSERT_TRUE(engine->adopt(base, bytes, /*reserve_pool=*/true, /*may_defer=*/true));
  EXPECT_EQ(engine->stats().deferred_bytes, bytes);
  auto* words = reinterpret_cast<uint64_t*>(base);
  // Every third page written (so blocks are partly populated), then a discard of two
  // pages and a munmap of the last MiB.
  for (size_t page = 0; page < bytes; page += 3 * kPage) fill_words(words, word_of(page), kPage / 8, 7);
  EXPECT_EQ(engine->stats().faults(), 0u) << "a deferred region must not fault through EMP";
  ASSERT_TRUE(engine->discard_range(base + 3 * kPage, 2 * kPage));
  ASSERT_TRUE(engine->forget_range(base + 3 * kMiB, kMiB));
  ASSERT_EQ(os::raw_munmap(base + 3 * kMiB, kMiB), 0);
  EXPECT_EQ(engine->stats().deferred_bytes, 3 * kMiB);
  // The second MiB moves elsewhere in the page tables (no copy, still deferred).
  auto moved = engine->remap_deferred(base + kMiB, kMiB, kMiB, MREMAP_MAYMOVE, nullptr);
  ASSERT_TRUE(moved.has_value());
  ASSERT_TRUE(*moved);
  char* second = static_cast<char*>(**moved);
  EXPECT_EQ(engine->stats().deferred_bytes, 3 * kMiB);
  EXPECT_EQ(engine->stats().faults(), 0u);
  auto expected = [&](size_t original_offset, size_t page) -> int {  // 7 written, 0 never or discarded
    size_t offset = original_offset + page;
    if (offset == 3 * kPage || offset == 4 * kPage) return 0;
    return offset % (3 * kPage) == 0 ? 7 : 0;
  };
  auto verify = [&](const char* where) {
    struct Piece {
      const char* address;
      size_t original_offset, length;
    } pieces[] = {{base, 0, kMiB}, {second, kMiB, kMiB}, {base + 2 * kMiB, 2 * kMiB, kMiB}};
    for (const Piece& piece : pieces) {
      for (size_t page = 0; page < piece.length; page += kPage) {
        const auto* page_words = reinterpret_cast<const uint64_t*>(piece.address + page);
        if (expected(piece.original_offset, page) == 7) {
          ASSERT_EQ(check_words(page_words - word_of(piece.original_offset + page), word_of(piece.original_offset + page),
                                kPage / 8, 7),
                    SIZE_MAX)
              << where << ": page at " << piece.original_offset + page;
        } else {
          for (size_t w = 0; w < kPage / 8; ++w) ASSERT_EQ(page_words[w], 0u) << where << ": page at " << piece.original_offset + page;
        }
      }
    }
  };
  verify("deferred");
  // Other memory needs the budget: the deferred regions are taken over, then evicted.
  push_out(*engine, 32 * kMiB);
  core::EngineStats stats = engine->stats();
  EXPECT_EQ(stats.deferred_bytes, 0u);
  EXPECT_GE(stats.takeovers, 3u);
  EXPECT_GT(stats.evictions_dirty, 0u);
  verify("taken over and evicted");
  push_out(*engine, 32 * kMiB);
  verify("evicted again");
  EXPECT_LE(engine->stats().peak_resident_bytes, engine->budget() + engine->slack());
  ASSERT_TRUE(engine->release(base));
  ASSERT_TRUE(engine->release(second));
  ASSERT_TRUE(engine->release(base + 2 * kMiB));
  os::raw_munmap(base, kMiB);
  os::raw_munmap(second, kMiB);
  os::raw_munmap(base + 2 * kMiB, kMiB);
  EXPECT_EQ(engine->stats().regions, 0u);
  EXPECT_EQ(engine->resident(), 0u);
}

#if !defined(__SANITIZE_THREAD__)  // ThreadSanitizer does not follow fork() of a threaded process
TEST_F(EngineRanges, ForkedChildReadsTheParentsEvictedDataAndEvictsIntoItsShare) {
  auto& engine = engine_;
  const size_t bytes = kBytes;
  uint64_t* words = words_;  // most of it is in the second tier now

  auto share = std::make_unique<tier::ChildShare>();
  share->preparations = engine->pool().prepare_child_tiers();
  ASSERT_TRUE(engine->pool().share_with_child(engine->fork_copy_bytes(), *share));
  EXPECT_GE(share->bytes, bytes);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  engine->hold_for_fork();
  pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    int code = 0;
    try {
      // Its own tier (in libemp.so: the memory path's, opened at first use) holds what
      // it maps after the fork.
      std::vector<std::unique_ptr<tier::Tier>> own_tiers;
      own_tiers.push_back(tier::MemoryTier::create(8 * kMiB));
      auto pool = engine->pool().continue_in_child(*share, std::move(own_tiers));
      engine->pool().abandon_in_child();
      std::unique_ptr<core::Engine> own = engine->continue_in_child(std::move(pool));
      if (check_words(words, 0, bytes / 8, 1) != SIZE_MAX) code = 2;          // the parent's data
      fill_words(words, 0, bytes / 8, 4);                                      // its own copy
      push_out(*own, 4 * kMiB);
      if (::testing::Test::HasFailure()) code = 6;
      if (check_words(words, 0, bytes / 8, 4) != SIZE_MAX) code = 3;          // read back its own evictions
      if (own->resident() > own->budget() + own->slack()) code = 4;
      (void)own.release();  // the process ends here; nothing to tear down
    } catch (...) {
      code = 5;
    }
    ::_exit(code);
  }
  ASSERT_GT(child, 0);
  engine->release_after_fork_in_parent();
  ::close(fds[1]);
  for (auto& preparation : share->preparations)
    if (preparation) preparation->abandon();
  share->preparations.clear();
  const uint64_t reserved_with_child = engine->pool().reserved();
  tier::start_fork_watch(engine->pool(), UniqueFd(fds[0]), std::move(share));
  // The parent keeps going meanwhile: it rewrites (and evicts) its own copy.
  fill_words(words, 0, bytes / 8, 5);
  push_out(*engine, 4 * kMiB);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child died with signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: wrong pre-fork data, 3: lost its own writes, 4: over budget, 5: no engine, 6: cannot map";
  EXPECT_EQ(check_words(words, 0, bytes / 8, 5), SIZE_MAX) << "the parent's copy changed";
  // The child's share comes back once it has ended.
  for (int i = 0; i < 5000 && engine->pool().reserved() == reserved_with_child; ++i) ::usleep(1000);
  EXPECT_LT(engine->pool().reserved(), reserved_with_child);
  ASSERT_TRUE(engine->release(base_));
}
#endif

}  // namespace
}  // namespace emp::testing
