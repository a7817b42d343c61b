// The remote-tier factory the engine's Pool uses for `<host>:<MiB>:<port>` elements.
// Reads the auth key from Options (auth_key, else auth_key_file). Setup zone: the
// factory throws with a message naming the element.
#pragma once

#include "common/options.h"
#include "net/remote_tier.h"
#include "tier/pool.h"

namespace emp::net {

// `base` supplies timeouts and the provider choice; its key is replaced by the one in
// `options` when that names one.
tier::Pool::RemoteFactory make_remote_factory(const Options& options, const RemoteConfig& base = {});

}  // namespace emp::net
