// Querying every EMP process on this node over its control socket (the ones this user
// may open; root: every user's), for the commands that show them all at once: `emp
// metrics` and `emp top`. A process that exits meanwhile, or that refuses the query, is
// left out.
#pragma once

#include <sys/types.h>

#include <vector>

#include "control/json.h"

namespace emp::cli {

struct ProcessSample {
  pid_t pid = 0;
  control::JsonValue info;   // the "info" reply (program, uid, budget, tiers, ...)
  control::JsonValue stats;  // the "stats" member of the "stats" reply (core/stats.h)
};

std::vector<ProcessSample> query_all_processes();

}  // namespace emp::cli
