// Shared memory under EMP (what QEMU's memory-backend-memfd needs): a MAP_SHARED memfd
// mapping adopted with Engine::adopt_shared. Data survives eviction, the memfd itself
// never holds more than the DRAM budget (evicted blocks become holes again), and
// discarded ranges read zeros. Runs under the sanitizer presets too.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "common/unique_fd.h"
#include "os/raw_syscalls.h"
#include "testing/engine_fixture.h"
#include "testing/patterns.h"

namespace emp::testing {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kMiB = 1 << 20;

// Bytes the memfd holds in the page cache (its allocated blocks).
uint64_t memfd_resident_bytes(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

class EngineSharedMemory : public ::testing::Test {
 protected:
  static constexpr size_t kBytes = 32 * kMiB;
  static constexpr uint64_t kBudget = 4 * kMiB;
  void SetUp() override {
    EngineSetup setup;
    setup.tier = TierKind::kFile;
    setup.budget = kBudget;
    std::string skip;
    engine_ = make_engine(setup, &skip, &files_.files);
    if (!engine_) GTEST_SKIP() << skip;
    if (!engine_->userfaultfd().shared_memory_enabled())
      GTEST_SKIP() << "this kernel's userfaultfd lacks MISSING_SHMEM / WP_HUGETLBFS_SHMEM";
    memfd_ = UniqueFd(::memfd_create("emp-guest-ram-test", MFD_CLOEXEC));
    ASSERT_TRUE(memfd_.valid());
    ASSERT_EQ(::ftruncate(memfd_.get(), kBytes), 0);
    base_ = static_cast<char*>(os::raw_mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0));
    ASSERT_NE(base_, MAP_FAILED);
    ASSERT_TRUE(engine_->adopt_shared(base_, kBytes));
    words_ = reinterpret_cast<uint64_t*>(base_);
  }
  void TearDown() override {
    if (engine_ && base_) {
      (void)engine_->release(base_);
      os::raw_munmap(base_, kBytes);
    }
  }
  TempFiles files_;
  std::unique_ptr<core::Engine> engine_;
  UniqueFd memfd_;
  char* base_ = nullptr;
  uint64_t* words_ = nullptr;
};

TEST_F(EngineSharedMemory, DataSurvivesEvictionAndTheFileStaysWithinTheBudget) {
  const size_t words = kBytes / 8;
  fill_words(words_, 0, words, 1);
  uint64_t slack = engine_->slack();
  EXPECT_LE(memfd_resident_bytes(memfd_.get()), kBudget + slack);
  ASSERT_EQ(check_words(words_, 0, words, 1), SIZE_MAX);
  // Random page rewrites, then a full check: dirty blocks written back, clean ones dropped.
  std::mt19937_64 random(7);
  std::vector<uint64_t> version(kBytes / kPage, 1);
  for (int i = 0; i < 4000; ++i) {
    size_t page = random() % version.size();
    version[page] += 1;
    fill_words(words_, page * kPage / 8, kPage / 8, version[page]);
  }
  for (size_t page = 0; page < version.size(); ++page)
    ASSERT_EQ(check_words(words_, page * kPage / 8, kPage / 8, version[page]), SIZE_MAX) << "page " << page;
  EXPECT_LE(memfd_resident_bytes(memfd_.get()), kBudget + slack);
  EXPECT_LE(engine_->stats().peak_resident_bytes, kBudget + slack);
  EXPECT_GT(engine_->stats().evictions_dirty, 0u);
}

TEST_F(EngineSharedMemory, DiscardedRangesReadZeros) {
  const size_t words = kBytes / 8;
  fill_words(words_, 0, words, 3);
  // A whole-block range in the evicted part, pages inside a block, and the resident tail.
  struct Cut {
    size_t offset, length;
  };
  const Cut cuts[] = {{kMiB, 2 * kMiB}, {8 * kMiB + 3 * kPage, 2 * kPage}, {kBytes - 256 * 1024, 256 * 1024}};
  for (const Cut& cut : cuts) ASSERT_TRUE(engine_->discard_range(base_ + cut.offset, cut.length));
  auto discarded = [&](size_t byte) {
    for (const Cut& cut : cuts)
      if (byte >= cut.offset && byte < cut.offset + cut.length) return true;
    return false;
  };
  for (size_t page = 0; page < kBytes; page += kPage) {
    if (discarded(page)) {
      for (size_t w = 0; w < kPage / 8; ++w) ASSERT_EQ(words_[page / 8 + w], 0u) << "page at " << page;
    } else {
      ASSERT_EQ(check_words(words_, page / 8, kPage / 8, 3), SIZE_MAX) << "page at " << page;
    }
  }
}

}  // namespace
}  // namespace emp::testing
