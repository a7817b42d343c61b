#include "testing/engine_fixture.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <system_error>

#include "common/mem_path.h"

namespace emp::testing {

uint64_t process_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

TempFiles::~TempFiles() {
  for (const auto& file : files) ::unlink(file.c_str());
}

const char* to_string(TierKind kind) {
  switch (kind) {
    case TierKind::kMemory: return "memory";
    case TierKind::kFile: return "file";
    case TierKind::kTmpfsFile: return "tmpfs";
    case TierKind::kThreeTierPool: return "pool3";
  }
  return "?";
}

std::string temp_tier_path(const std::string& tag, const std::string& directory) {
  static std::atomic<int> counter{0};
  return directory + "/emp-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" + tag + ".tier";
}

std::unique_ptr<tier::Pool> make_pool(TierKind kind, uint64_t bytes, std::vector<std::string>* files) {
  auto file_tier = [&](uint64_t size, bool in_memory = false) {
    TierSpec spec;
    spec.kind = TierSpec::Kind::kFile;
    spec.location = in_memory ? temp_tier_path("tmpfs", "/dev/shm") : temp_tier_path("file");
    spec.size_bytes = size;
    spec.element = spec.location;
    if (files) files->push_back(spec.location);
    return tier::FileTier::open(spec);
  };
  std::vector<std::unique_ptr<tier::Tier>> tiers;
  switch (kind) {
    case TierKind::kMemory: tiers.push_back(tier::MemoryTier::create(bytes)); break;
    case TierKind::kFile: tiers.push_back(file_tier(bytes)); break;
    case TierKind::kTmpfsFile: tiers.push_back(file_tier(bytes, /*in_memory=*/true)); break;
    case TierKind::kThreeTierPool:
      tiers.push_back(tier::MemoryTier::create(bytes / 2));
      tiers.push_back(file_tier(bytes / 4));
      tiers.push_back(tier::MemoryTier::create(bytes / 4));
      break;
  }
  return std::make_unique<tier::Pool>(std::move(tiers));
}

std::unique_ptr<core::Engine> make_engine(const EngineSetup& setup, std::string* skip_reason,
                                          std::vector<std::string>* files) {
  core::EngineConfig config;
  config.options.block_size = setup.block_size;
  config.options.subblock_size = setup.subblock_size;
  config.options.csf = setup.csf;
  config.options.prefetch = setup.prefetch;
  config.options.elastic = setup.elastic;
  config.options.fault_threads = setup.fault_threads;
  config.budget_bytes = setup.budget;
  config.pool = make_pool(setup.tier, setup.pool_bytes, files);
  if (!setup.batched_unmap) config.drop_method = os::DropMethod::kMadvisePerRun;
  try {
    return core::Engine::create(std::move(config));
  } catch (const std::system_error& error) {
    if (error.code().value() == EPERM || error.code().value() == ENOSYS || error.code().value() == EACCES) {
      *skip_reason = std::string("userfaultfd unavailable: ") + error.what();
      return nullptr;
    }
    throw;
  }
}

}  // namespace emp::testing
