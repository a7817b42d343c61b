// PageDropBatch: both ways of dropping pages (one process_madvise per batch where the
// kernel has it, one madvise per run otherwise) really drop the pages — they read zeros
// afterwards — leave the others alone, and join adjacent ranges.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "core/fault_handler.h"
#include "os/page.h"
#include "os/page_drop.h"

namespace emp::testing {
namespace {

class PageDrop : public ::testing::TestWithParam<os::DropMethod> {};

TEST_P(PageDrop, DropsExactlyTheRangesGiven) {
  if (GetParam() == os::DropMethod::kProcessMadvise && os::probe_drop_method() != GetParam())
    GTEST_SKIP() << "this kernel has no process_madvise(PIDFD_SELF, MADV_DONTNEED) (Linux >= 6.14): the fallback is used";
  constexpr size_t kPages = 64;
  auto* memory = static_cast<unsigned char*>(
      ::mmap(nullptr, kPages * os::kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(memory, MAP_FAILED);
  std::memset(memory, 0xab, kPages * os::kPageSize);
  os::PageDropBatch batch(GetParam(), MADV_DONTNEED);
  auto page = [&](size_t i) { return reinterpret_cast<uintptr_t>(memory) + i * os::kPageSize; };
  // Every third page, plus a run of three adjacent ones (joined into one range).
  for (size_t i = 0; i < 30; i += 3) batch.add(page(i), os::kPageSize);
  for (size_t i = 40; i < 43; ++i) batch.add(page(i), os::kPageSize);
  ASSERT_EQ(batch.flush(), 0) << std::strerror(errno);
  EXPECT_TRUE(batch.empty());
  if (GetParam() == os::DropMethod::kProcessMadvise) EXPECT_EQ(batch.calls(), 1u);
  else EXPECT_EQ(batch.calls(), 11u);  // 10 single pages and one run
  for (size_t i = 0; i < kPages; ++i) {
    bool dropped = (i < 30 && i % 3 == 0) || (i >= 40 && i < 43);
    EXPECT_EQ(memory[i * os::kPageSize], dropped ? 0 : 0xab) << "page " << i;
  }
  ::munmap(memory, kPages * os::kPageSize);
}

INSTANTIATE_TEST_SUITE_P(Methods, PageDrop,
                         ::testing::Values(os::DropMethod::kProcessMadvise, os::DropMethod::kMadvisePerRun),
                         [](const auto& param_info) {
                           return param_info.param == os::DropMethod::kProcessMadvise ? "process_madvise" : "madvise_per_run";
                         });

TEST(WaitPolicy, PollsWhenFaultsComeCloseAndSleepsWhenFarApart) {
  core::WaitPolicy policy;
  for (int i = 0; i < 20; ++i) policy.note_gap(5'000);
  EXPECT_GT(policy.spin_ns(), 5'000u);
  EXPECT_LE(policy.spin_ns(), 2 * core::WaitPolicy::kMaxSpinNs);
  for (int i = 0; i < 20; ++i) policy.note_gap(500'000);
  EXPECT_EQ(policy.spin_ns(), 0u);
}

}  // namespace
}  // namespace emp::testing
