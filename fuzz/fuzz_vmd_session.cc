// Fuzz target: a hostile client against vmd's control plane. One vmd (4 MiB pool,
// loopback, no key) lives for the whole run; each input is what one client sends on a
// fresh session (its first byte chooses the TCP or the same-host socket), through the
// daemon's own frame reassembly, validation and handlers — authentication, leases
// (the lease worker really makes the memory), heartbeats, releases. vmd must answer or
// close, never crash, and its lease table must stay consistent.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/log.h"
#include "vmd/config.h"
#include "vmd/daemon.h"

namespace {

emp::vmd::Daemon& daemon() {
  static std::unique_ptr<emp::vmd::Daemon> instance = [] {
    emp::log::set_level(emp::log::Level::kError);
    emp::vmd::VmdConfig config = emp::vmd::parse_vmd_args({"-m", "4", "-p", "0", "--grace", "0"});
    return std::make_unique<emp::vmd::Daemon>(config);
  }();
  return *instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 16384) return 0;
  daemon().feed_for_testing({data + 1, size - 1}, /*local=*/(data[0] & 1) != 0);
  return 0;
}
