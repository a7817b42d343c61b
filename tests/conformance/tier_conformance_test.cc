// Tier conformance: the same contract checked against every Tier backend — the
// in-memory tier, the file tier, and the remote tier over tcp and over shm (each with
// a real vmd on loopback). Remote cases skip with the reason when vmd cannot run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <thread>

#include "net/remote_tier.h"
#include "os/mapping.h"
#include "testing/engine_fixture.h"
#include "testing/patterns.h"
#include "tier/file_tier.h"
#include "tier/memory_tier.h"
#include "tier/mirrored_tier.h"
#include "vmd_process.h"

namespace emp::testing {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kCapacity = 16 << 20;

struct Backend {
  std::string name;
  // Returns the tier, or nullptr with *skip set.
  std::function<std::unique_ptr<tier::Tier>(std::string* skip)> make;
};

// One vmd shared by every remote case of the suite.
VmdProcess* shared_vmd(std::string* error) {
  static std::unique_ptr<VmdProcess> vmd;
  static std::string start_error;
  static bool started = false;
  if (!started) {
    started = true;
    vmd = VmdProcess::start({"-m", "256", "-d", "tcp"}, &start_error);
  }
  if (!vmd) *error = start_error;
  return vmd.get();
}

std::unique_ptr<tier::Tier> make_remote(net::Provider provider, std::string* skip) {
  VmdProcess* vmd = shared_vmd(skip);
  if (!vmd) return nullptr;
  net::RemoteConfig config;
  config.provider = provider;
  config.op_timeout = 5s;
  config.reconnect_window = 5s;
  TierSpec spec;
  spec.kind = TierSpec::Kind::kRemote;
  spec.location = "127.0.0.1";
  spec.port = vmd->port();
  spec.size_bytes = kCapacity;
  spec.element = "127.0.0.1:16:" + std::to_string(vmd->port());
  try {
    return net::RemoteTier::connect(spec, config);
  } catch (const std::exception& error) {
    if (provider == net::Provider::kShm) {  // shm may be unavailable in a container
      *skip = std::string("shm data plane unavailable: ") + error.what();
      return nullptr;
    }
    throw;
  }
}

std::vector<std::string>& scratch_files() {
  static std::vector<std::string> files;
  return files;
}

std::unique_ptr<tier::Tier> make_file_tier(const std::string& directory) {
  TierSpec spec;
  spec.kind = TierSpec::Kind::kFile;
  spec.location = temp_tier_path("conformance", directory);
  spec.size_bytes = kCapacity;
  spec.element = spec.location + ":16:0";
  scratch_files().push_back(spec.location);
  return tier::FileTier::open(spec);
}

const std::vector<Backend>& backends() {
  static const std::vector<Backend> all = {
      {"memory", [](std::string*) -> std::unique_ptr<tier::Tier> { return tier::MemoryTier::create(kCapacity); }},
      {"file", [](std::string*) { return make_file_tier("/var/tmp"); }},
      // A file in memory: I/O in place on the calling thread, not io_uring.
      {"file_tmpfs", [](std::string*) { return make_file_tier("/dev/shm"); }},
      // EMP_REPLICAS=2: a mirror of a memory tier and a file.
      {"mirror", [](std::string*) -> std::unique_ptr<tier::Tier> {
         std::vector<std::unique_ptr<tier::Tier>> copies;
         copies.push_back(tier::MemoryTier::create(kCapacity));
         copies.push_back(make_file_tier("/var/tmp"));
         return tier::MirroredTier::create(std::move(copies));
       }},
      {"remote_tcp", [](std::string* skip) { return make_remote(net::Provider::kTcp, skip); }},
      {"remote_shm", [](std::string* skip) { return make_remote(net::Provider::kShm, skip); }},
  };
  return all;
}

class TierConformance : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    std::string skip;
    tier_ = backends()[GetParam()].make(&skip);
    if (!tier_) GTEST_SKIP() << skip;
    // I/O buffers are page-aligned and registered, as the engine's staging memory is.
    auto mapping = os::Mapping::anonymous(kBufferWords * 8);
    ASSERT_TRUE(mapping.is_ok());
    mapping_ = std::move(*mapping);
    buffer_ = std::span<uint64_t>(reinterpret_cast<uint64_t*>(mapping_.data()), kBufferWords);
    ASSERT_TRUE(tier_->register_buffer(buffer_.data(), buffer_.size() * 8).is_ok());
  }
  void TearDown() override {
    tier_.reset();
    for (const auto& f : scratch_files()) ::unlink(f.c_str());
    scratch_files().clear();
  }
  static constexpr size_t kBufferWords = (4 << 20) / 8;
  std::unique_ptr<tier::Tier> tier_;
  os::Mapping mapping_;
  std::span<uint64_t> buffer_;
};

// Fills `words` of buffer at `index` with the pattern of tier offset `offset`.
void fill_for(uint64_t* words, uint64_t offset, size_t bytes, uint64_t version) {
  for (size_t i = 0; i < bytes / 8; ++i) words[i] = pattern_word(offset / 8 + i, version);
}
bool check_for(const uint64_t* words, uint64_t offset, size_t bytes, uint64_t version) {
  for (size_t i = 0; i < bytes / 8; ++i)
    if (words[i] != pattern_word(offset / 8 + i, version)) return false;
  return true;
}

TEST_P(TierConformance, ReportsItsCapacity) { EXPECT_EQ(tier_->capacity(), kCapacity); }

TEST_P(TierConformance, ReadsBackSingleWritesOfEverySubblockSize) {
  uint64_t offset = 0;
  for (size_t size = 4096; size <= (128 << 10); size *= 2) {
    fill_for(buffer_.data(), offset, size, 1);
    ASSERT_TRUE(tier_->write(offset, buffer_.data(), size).is_ok()) << size;
    std::fill(buffer_.begin(), buffer_.end(), 0);
    ASSERT_TRUE(tier_->read(offset, buffer_.data(), size).is_ok()) << size;
    EXPECT_TRUE(check_for(buffer_.data(), offset, size, 1)) << size;
    offset += size;
  }
}

TEST_P(TierConformance, BatchesCompleteEverySpan) {
  constexpr size_t kSub = 16 << 10, kSpans = 128;  // 2 MiB in one call
  std::vector<tier::IoSpan> spans;
  for (size_t i = 0; i < kSpans; ++i) {
    uint64_t offset = (i * 7 % kSpans) * kSub + (4 << 20);  // scattered order
    uint64_t* words = buffer_.data() + i * kSub / 8;
    fill_for(words, offset, kSub, 2);
    spans.push_back({offset, words, kSub});
  }
  ASSERT_TRUE(tier_->write_batch(spans).is_ok());
  std::fill(buffer_.begin(), buffer_.end(), 0);
  ASSERT_TRUE(tier_->read_batch(spans).is_ok());
  for (const auto& span : spans) EXPECT_TRUE(check_for(static_cast<uint64_t*>(span.buffer), span.offset, kSub, 2));
}

TEST_P(TierConformance, OverwritesReplaceOldData) {
  fill_for(buffer_.data(), 8192, 8192, 3);
  ASSERT_TRUE(tier_->write(8192, buffer_.data(), 8192).is_ok());
  fill_for(buffer_.data(), 8192, 8192, 4);
  ASSERT_TRUE(tier_->write(8192, buffer_.data(), 8192).is_ok());
  std::fill(buffer_.begin(), buffer_.end(), 0);
  ASSERT_TRUE(tier_->read(8192, buffer_.data(), 8192).is_ok());
  EXPECT_TRUE(check_for(buffer_.data(), 8192, 8192, 4));
}

TEST_P(TierConformance, TheLastGranuleIsUsableAndBeyondIsRefused) {
  const uint64_t last = kCapacity - 4096;
  fill_for(buffer_.data(), last, 4096, 5);
  ASSERT_TRUE(tier_->write(last, buffer_.data(), 4096).is_ok());
  ASSERT_TRUE(tier_->read(last, buffer_.data(), 4096).is_ok());
  EXPECT_TRUE(check_for(buffer_.data(), last, 4096, 5));
  EXPECT_EQ(tier_->read(kCapacity, buffer_.data(), 4096).code(), ERANGE);
  EXPECT_EQ(tier_->read(last, buffer_.data(), 8192).code(), ERANGE);
  EXPECT_EQ(tier_->write(~0ULL & ~4095ULL, buffer_.data(), 4096).code(), ERANGE);
}

TEST_P(TierConformance, UnalignedOrEmptyRequestsAreRefused) {
  EXPECT_EQ(tier_->read(100, buffer_.data(), 4096).code(), EINVAL);
  EXPECT_EQ(tier_->read(0, buffer_.data(), 100).code(), EINVAL);
  EXPECT_EQ(tier_->write(0, buffer_.data(), 0).code(), EINVAL);
  EXPECT_EQ(tier_->write(0, nullptr, 4096).code(), EINVAL);
  EXPECT_GE(tier_->counters().errors, 4u);
}

TEST_P(TierConformance, ConcurrentThreadsOnDisjointRanges) {
  constexpr unsigned kThreads = 4;
  constexpr size_t kSub = 64 << 10;
  const size_t per_thread = kCapacity / kThreads;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      uint64_t* words = buffer_.data() + t * (kSub / 8) * 2;  // two subblocks per thread
      for (int round = 0; round < 2; ++round)
        for (uint64_t off = t * per_thread; off < (t + 1) * per_thread; off += kSub) {
          fill_for(words, off, kSub, 10 + round);
          if (!tier_->write(off, words, kSub).is_ok()) ++failures;
          if (!tier_->read(off, words + kSub / 8, kSub).is_ok()) ++failures;
          if (!check_for(words + kSub / 8, off, kSub, 10 + round)) ++failures;
        }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(TierConformance, CountsBytesAndOperations) {
  auto before = tier_->counters();
  ASSERT_TRUE(tier_->write(0, buffer_.data(), 65536).is_ok());
  tier::IoSpan spans[2] = {{0, buffer_.data(), 4096}, {8192, buffer_.data() + 1024, 8192}};
  ASSERT_TRUE(tier_->read_batch(spans).is_ok());
  auto after = tier_->counters();
  EXPECT_EQ(after.bytes_written - before.bytes_written, 65536u);
  EXPECT_EQ(after.write_ops - before.write_ops, 1u);
  EXPECT_EQ(after.bytes_read - before.bytes_read, 12288u);
  EXPECT_EQ(after.read_ops - before.read_ops, 2u);
  EXPECT_EQ(tier_->health(), tier::TierHealth::kHealthy);
}

TEST_P(TierConformance, UnregisteredBuffersWorkToo) {
  auto* loose = static_cast<uint64_t*>(std::aligned_alloc(4096, 4096));
  fill_for(loose, 12288, 4096, 6);
  ASSERT_TRUE(tier_->write(12288, loose, 4096).is_ok());
  std::memset(loose, 0, 4096);
  ASSERT_TRUE(tier_->read(12288, loose, 4096).is_ok());
  EXPECT_TRUE(check_for(loose, 12288, 4096, 6));
  std::free(loose);
}

INSTANTIATE_TEST_SUITE_P(AllTiers, TierConformance, ::testing::Range<size_t>(0, 5),
                         [](const auto& param_info) { return backends()[param_info.param].name; });

}  // namespace
}  // namespace emp::testing
