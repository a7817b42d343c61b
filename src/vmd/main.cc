// vmd: the EMP memory exporter. Parses the command line, builds the Daemon and serves
// until SIGTERM/SIGINT. Every setup error ends in one clear line and exit code 1 (2
// for usage errors).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/log.h"
#include "vmd/config.h"
#include "vmd/daemon.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  emp::vmd::VmdConfig config;
  try {
    config = emp::vmd::parse_vmd_args(args);
  } catch (const emp::vmd::UsageError& error) {
    std::fprintf(stderr, "vmd: %s\n", error.what());
    return 2;
  }
  if (config.help) {
    std::fputs(emp::vmd::vmd_usage().c_str(), stdout);
    return 0;
  }
  emp::log::set_level(config.verbosity >= 2 ? emp::log::Level::kDebug
                      : config.verbosity == 1 ? emp::log::Level::kInfo
                                              : emp::log::Level::kWarn);
  // Each client holds a control connection and, over tcp, three data connections: take
  // the descriptors -c asks for, up to the hard limit.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    rlim_t wanted = static_cast<rlim_t>(config.max_clients) * 4 + 64;
    if (files.rlim_cur < wanted) {
      files.rlim_cur = std::min(wanted, files.rlim_max);
      (void)::setrlimit(RLIMIT_NOFILE, &files);
    }
  }
  try {
    emp::vmd::Daemon daemon(config);
    return daemon.run();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "vmd: %s\n", error.what());
    return 1;
  }
}
