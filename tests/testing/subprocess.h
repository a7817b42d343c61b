// Running a real program for integration tests: argv plus extra environment variables,
// stdout and stderr captured together, a timeout (SIGKILL), and the outcome. Used to run
// programs under libemp.so and the `emp` CLI. Thread-compatible.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace emp::testing {

struct ProcessResult {
  int exit_code = -1;    // when the program exited
  int signal = 0;        // when a signal ended it
  bool timed_out = false;
  std::string output;    // stdout and stderr, interleaved
  double seconds = 0;

  bool ok() const noexcept { return exit_code == 0 && signal == 0 && !timed_out; }
  std::string describe() const;  // "exit 1", "signal 11", "timed out" + the output's tail
};

// `environment` entries are "NAME=value", added to (or replacing in) this process's.
ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                          std::chrono::seconds timeout);

}  // namespace emp::testing
