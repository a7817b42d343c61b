// The next definition of a symbol libemp.so interposes (glibc's), looked up with
// dlsym(RTLD_NEXT) inside an InternalScope so that dlsym's own allocations go to glibc.
// Thread-safe; callers cache the result.
#pragma once

#include <dlfcn.h>

#include "preload/thread_role.h"

namespace emp::preload {

inline void* dlsym_next(const char* name) noexcept {
  InternalScope scope;
  return ::dlsym(RTLD_NEXT, name);
}

}  // namespace emp::preload
