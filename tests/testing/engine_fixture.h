// Helpers to build a real Engine for tests: a memory, file or multi-tier pool, a
// budget and options, skipping (with the reason) when userfaultfd is not permitted.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/engine.h"
#include "tier/file_tier.h"
#include "tier/memory_tier.h"

namespace emp::testing {

// kFile: a file on the disk (O_DIRECT; io_uring for batches); kTmpfsFile: a file in
// /dev/shm (I/O in place on the calling thread).
enum class TierKind { kMemory, kFile, kTmpfsFile, kThreeTierPool };
const char* to_string(TierKind kind);

struct EngineSetup {
  uint64_t block_size = 64 << 10;
  uint64_t subblock_size = 16 << 10;
  bool csf = true;
  bool prefetch = true;
  bool elastic = false;
  unsigned fault_threads = 2;
  uint64_t budget = 16 << 20;
  uint64_t pool_bytes = 256 << 20;
  TierKind tier = TierKind::kMemory;
  // False forces the fallback for dropping evicted pages (one madvise per run) on kernels
  // that have the batched path.
  bool batched_unmap = true;
};

// Scratch files of one test, removed when it ends.
struct TempFiles {
  std::vector<std::string> files;
  TempFiles() = default;
  TempFiles(const TempFiles&) = delete;
  TempFiles& operator=(const TempFiles&) = delete;
  ~TempFiles();
};

// This process's VmRSS in bytes (from /proc/self/status).
uint64_t process_rss_bytes();
// False under ASan/TSan, whose shadow memory makes RSS say nothing about EMP's budget.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kRssReflectsEmp = false;
#else
inline constexpr bool kRssReflectsEmp = true;
#endif

// A unique scratch file path in `directory` (removed by the caller or at exit).
std::string temp_tier_path(const std::string& tag, const std::string& directory = "/var/tmp");
std::unique_ptr<tier::Pool> make_pool(TierKind kind, uint64_t bytes, std::vector<std::string>* files);
// Returns nullptr and sets `skip_reason` when userfaultfd is unavailable.
std::unique_ptr<core::Engine> make_engine(const EngineSetup& setup, std::string* skip_reason,
                                          std::vector<std::string>* files);

}  // namespace emp::testing

// Skips the current test with the reason when userfaultfd cannot be used here.
#define EMP_MAKE_ENGINE_OR_SKIP(var, setup, files)                        \
  std::string emp_skip_reason_##var;                                      \
  auto var = ::emp::testing::make_engine(setup, &emp_skip_reason_##var, files); \
  if (!var) GTEST_SKIP() << emp_skip_reason_##var
