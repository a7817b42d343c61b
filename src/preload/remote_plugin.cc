// libemp-remote.so: the remote-donor tier (libfabric, OpenSSL) for libemp.so, loaded
// with dlopen only when a memory path names a donor. libfabric pulls in provider
// libraries whose constructors calibrate clocks by sleeping (~0.2 s per process here):
// keeping it out of libemp.so keeps every other program's start-up cheap.
#include <cstdio>
#include <exception>

#include "common/log.h"
#include "common/options.h"
#include "net/remote_factory.h"

// Returns a new tier::Pool::RemoteFactory (owned by the caller), or nullptr with the
// reason in `error`.
extern "C" __attribute__((visibility("default"))) void* emp_remote_factory_v1(const emp::Options* options,
                                                                              int log_level, char* error,
                                                                              size_t error_size) noexcept {
  try {
    emp::log::set_level(static_cast<emp::log::Level>(log_level));
    return new emp::tier::Pool::RemoteFactory(emp::net::make_remote_factory(*options));
  } catch (const std::exception& e) {
    std::snprintf(error, error_size, "%s", e.what());
  } catch (...) {
    std::snprintf(error, error_size, "unknown error");
  }
  return nullptr;
}
