// The entry point of libemp.so: starts EMP before main() from the environment (read once
// from `environ`), and prints EMP_STATS at exit. _exit and _Exit (which run no
// destructor: forked workers end with them) remove the process's control socket first. Any start-up error ends the process
// with one line on stderr and exit status 1, before the program runs.
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "preload/runtime.h"
#include "preload/thread_role.h"

extern "C" void* __libc_malloc(size_t size);
extern char** environ;

namespace emp::preload {
namespace {

[[noreturn]] void die(const char* message) {
  std::string line = std::string("emp: ") + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  ::_exit(1);
}

// EMP's own allocations must come from glibc; a library that redefines glibc's
// internal allocator names would silently mix EMP memory into EMP's fault path.
void check_internal_allocator() {
  Dl_info info{};
  if (!::dladdr(reinterpret_cast<void*>(&__libc_malloc), &info) || !info.dli_fname ||
      !std::strstr(info.dli_fname, "libc.so"))
    die(("__libc_malloc resolves to " + std::string(info.dli_fname ? info.dli_fname : "an unknown object") +
         ", not glibc: load libemp.so without other malloc replacements")
            .c_str());
}

__attribute__((constructor(101))) void start_emp() {
  InternalScope scope;
  try {
    check_internal_allocator();
    (void)Runtime::start(environ);
  } catch (const std::exception& e) {
    die(e.what());
  } catch (...) {
    die("unknown error while starting");
  }
}

__attribute__((destructor)) void stop_emp() {
  if (Runtime* rt = runtime()) rt->at_exit();
}

}  // namespace
}  // namespace emp::preload

extern "C" {

[[noreturn]] void _exit(int status) {
  if (emp::preload::Runtime* rt = emp::preload::runtime()) rt->at_quick_exit();
  ::syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

[[noreturn]] void _Exit(int status) { _exit(status); }

}  // extern "C"
