// Fuzz target: the control socket of an EMP process (`emp ls|stats|resize|donors`).
// Each input is one request line handled by a real ControlServer over a real engine
// (a 16 MiB in-memory second tier); every reply must be one JSON object that the CLI's
// parser reads back. The parser also reads the raw input, as `emp` reads a hostile
// process's replies.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <memory>
#include <string_view>

#include "common/log.h"
#include "control/control_server.h"
#include "control/json.h"
#include "core/engine.h"
#include "tier/memory_tier.h"
#include "tier/pool.h"

namespace {

emp::control::ControlServer* server() {
  static emp::core::Engine* engine = nullptr;
  static std::unique_ptr<emp::control::ControlServer> instance = []() -> std::unique_ptr<emp::control::ControlServer> {
    emp::log::set_level(emp::log::Level::kError);
    try {
      emp::core::EngineConfig config;
      config.budget_bytes = 8 << 20;
      std::vector<std::unique_ptr<emp::tier::Tier>> tiers;
      tiers.push_back(emp::tier::MemoryTier::create(16 << 20));
      config.pool = std::make_unique<emp::tier::Pool>(std::move(tiers));
      engine = emp::core::Engine::create(std::move(config)).release();  // lives for the run
      static char directory[] = "/tmp/emp-fuzz-XXXXXX";  // private (0700), removed at exit
      if (!::mkdtemp(directory)) throw std::runtime_error("mkdtemp failed");
      std::atexit([] { ::rmdir(directory); });  // runs after the server (made later) is gone
      emp::control::ControlInfo info;
      info.program = "fuzz";
      info.socket_directory = directory;
      return emp::control::ControlServer::start(*engine, info);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "fuzz_control_request: no engine (%s): only the JSON parser is fuzzed\n", error.what());
      return nullptr;
    }
  }();
  return instance.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)emp::control::JsonValue::parse(text);
  if (auto* control = server()) {
    std::string reply = control->handle(text);
    auto parsed = emp::control::JsonValue::parse(reply);
    if (!parsed || !parsed->is_object()) std::abort();  // a reply the CLI cannot read is a bug
  }
  return 0;
}
