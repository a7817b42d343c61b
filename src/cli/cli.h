// Shared pieces of the `emp` command-line tool: the two error kinds main() maps to exit
// statuses (usage: 2, runtime: 1), argument helpers, and the command entry points.
// CLI zone: everything may throw; single-threaded.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace emp::cli {

inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

// Bad command line: printed as "emp <command>: <message>", exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Anything else that stops a command: exit status 1.
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Args = std::vector<std::string>;

// "1234" -> 1234; anything else throws UsageError naming the text.
pid_t parse_pid(std::string_view text);
bool wants_help(const Args& args);

// The login name of `uid`, or the number when it has none (emp ls, emp top).
std::string user_name(uint64_t uid);

int run_command(const Args& args);     // emp run
int ls_command(const Args& args);      // emp ls
int stats_command(const Args& args);   // emp stats
int resize_command(const Args& args);  // emp resize
int donors_command(const Args& args);  // emp donors
int metrics_command(const Args& args); // emp metrics
int top_command(const Args& args);     // emp top

std::string run_help();  // built from the option table
std::string ls_help();
std::string stats_help();
std::string resize_help();
std::string donors_help();
std::string metrics_help();
std::string top_help();

}  // namespace emp::cli
