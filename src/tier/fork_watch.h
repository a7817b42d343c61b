// The second tier across fork().
//
// A forked child inherits its parent's block tables, whose evicted blocks name slots in
// the parent's tiers, but none of the parent's threads, connections or rings. So before
// the fork the parent prepares, for the child, a pool of the child's own (Pool::
// prepare_child_tiers, share_with_child): every tier continues in the child over the
// same data (Tier::continue_in_child: a donor's lease gets a connection of the child's
// own, attached in the parent before the fork, so vmd keeps the lease while the child
// lives; a file is shared through a duplicate descriptor; a memory tier is the child's
// copy), the child reads the slots that existed at the fork directly, and it writes into
// space its parent reserved and gave it at the fork (reserve at fork: a fork the second
// tier cannot hold fails with ENOMEM), then into tiers of its own opened at its first
// eviction there (LazyTier). Nothing of the child's passes through the parent, so the
// child keeps working after the parent exits.
//
// The parent keeps the slots that existed at the fork and the space it gave away until
// the child and every process forked from it have ended or exec'd: the child holds one
// end of a socketpair (inherited by its own children, closed by exec), and a detached
// thread in the parent ("emp-fork-watch") waits for end-of-file on the other end.
#pragma once

#include <memory>

#include "common/unique_fd.h"
#include "tier/pool.h"

namespace emp::tier {

// In the parent after fork: calls pool.end_child(share) once `socket` reads end-of-file.
// The pool must outlive the thread (libemp.so's never dies). Throws std::system_error
// when the thread cannot start.
void start_fork_watch(Pool& pool, UniqueFd socket, std::unique_ptr<ChildShare> share);

}  // namespace emp::tier
