#include "preload/runtime.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string_view>

#include "common/log.h"
#include "common/size_parse.h"
#include "os/mapping.h"
#include "os/raw_syscalls.h"
#include "preload/thread_role.h"
#include "tier/fork_watch.h"

namespace emp::preload {
namespace {

std::atomic<Runtime*> g_runtime{nullptr};
// The runtime lives in static storage and is never destroyed (see runtime.h).
alignas(Runtime) unsigned char g_runtime_storage[sizeof(Runtime)];
struct sigaction g_previous_segv;

constexpr uint64_t kArenaAlignment = 32ULL << 20;

const char* find_variable(char** envp, std::string_view name) {
  for (char** e = envp; e && *e; ++e) {
    std::string_view entry(*e);
    if (entry.size() > name.size() && entry.substr(0, name.size()) == name && entry[name.size()] == '=')
      return *e + name.size() + 1;
  }
  return nullptr;
}

void child_segv_handler(int signal, siginfo_t* info, void* context) {
  Runtime* rt = runtime();
  uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
  if (rt && info->si_code == SEGV_ACCERR && rt->engine().overlaps(info->si_addr, 1)) {
    char message[400];
    int n = std::snprintf(message, sizeof message,
                          "emp[%d]: this forked process touched memory at %#lx that EMP had moved to the second "
                          "tier before fork(), and it could not start EMP of its own to read it back (see the "
                          "error above)\n",
                          static_cast<int>(getpid()), address);
    ssize_t ignored = ::write(STDERR_FILENO, message, static_cast<size_t>(n));
    (void)ignored;
    ::signal(SIGSEGV, SIG_DFL);
    return;  // the access faults again and the default action ends the process
  }
  if (g_previous_segv.sa_flags & SA_SIGINFO) {
    if (g_previous_segv.sa_sigaction) g_previous_segv.sa_sigaction(signal, info, context);
    return;
  }
  if (g_previous_segv.sa_handler == SIG_DFL || g_previous_segv.sa_handler == SIG_IGN) {
    ::signal(SIGSEGV, SIG_DFL);
    return;
  }
  g_previous_segv.sa_handler(signal);
}

// The remote-donor tier lives in libemp-remote.so beside this library (see
// remote_plugin.cc); it is loaded only when the memory path names a donor.
tier::Pool::RemoteFactory load_remote_factory(const Options& options, const MemPath& mem_path) {
  bool any_remote = false;
  for (const TierSpec& spec : mem_path.tiers) any_remote |= spec.kind == TierSpec::Kind::kRemote;
  if (!any_remote) return {};
  Dl_info self{};
  if (!::dladdr(reinterpret_cast<void*>(&load_remote_factory), &self) || !self.dli_fname)
    throw std::runtime_error("cannot find where libemp.so is installed");
  std::string path = self.dli_fname;
  path = path.substr(0, path.find_last_of('/') + 1) + "libemp-remote.so";
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    throw std::runtime_error(std::string("remote donors need ") + path + " (installed with libemp.so): " + ::dlerror());
  using Entry = void* (*)(const Options*, int, char*, size_t);
  auto entry = reinterpret_cast<Entry>(::dlsym(handle, "emp_remote_factory_v1"));
  if (!entry) throw std::runtime_error(path + " is not EMP's remote-donor library (no emp_remote_factory_v1)");
  char error[512] = "";
  std::unique_ptr<tier::Pool::RemoteFactory> factory(
      static_cast<tier::Pool::RemoteFactory*>(entry(&options, static_cast<int>(log::level()), error, sizeof error)));
  if (!factory) throw std::runtime_error(error);
  return *factory;
}

// Removes EMP from the environment this process's children will inherit (guest-RAM
// mode: QEMU's helpers are not VMs). LD_PRELOAD keeps any other library.
void scrub_environment() {
  for (const char* name : {"EMP_MEM_PATH", "EMP_PMEM_PATH", "EMP_GUEST_RAM"}) ::unsetenv(name);
  const char* preload = ::getenv("LD_PRELOAD");
  if (!preload) return;
  std::string kept;
  std::string list = preload;
  for (size_t start = 0; start <= list.size();) {
    size_t end = list.find_first_of(": ", start);
    if (end == std::string::npos) end = list.size();
    std::string entry = list.substr(start, end - start);
    if (!entry.empty() && entry.find("libemp") == std::string::npos) kept += (kept.empty() ? "" : ":") + entry;
    start = end + 1;
  }
  if (kept.empty()) {
    ::unsetenv("LD_PRELOAD");
  } else {
    ::setenv("LD_PRELOAD", kept.c_str(), 1);
  }
}

std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (size_t i = 0; (i = text.find('\n', i)) != std::string::npos;) text.replace(i, 1, "; ");
  return text;
}

}  // namespace

Runtime* runtime() noexcept { return g_runtime.load(std::memory_order_acquire); }

Runtime* Runtime::start(char** envp) {
  const char* path = find_variable(envp, "EMP_MEM_PATH");
  if (!path) path = find_variable(envp, "EMP_PMEM_PATH");
  if (!path) return nullptr;
  try {
    std::vector<std::string> warnings;
    Options options = options_from_environment(envp, &warnings);
    log::set_level(options.log_level);
    for (const auto& w : warnings) EMP_WARN("preload", "%s", w.c_str());
    if (!options.mem_path) throw std::invalid_argument("EMP_MEM_PATH is empty");
    const MemPath& mem_path = *options.mem_path;
    if (mem_path.tiers.empty())
      throw std::invalid_argument("the memory path names no second tier (a donor <host>:<MiB>:<port>, a device or a file)");

    Runtime* rt = new (g_runtime_storage) Runtime();
    core::EngineConfig config;
    config.options = options;
    bool dram_auto = mem_path.dram_auto || !mem_path.dram_bytes;
    rt->tier_specs_ = mem_path.tiers;
    rt->remote_factory_ = load_remote_factory(options, mem_path);
    rt->replicas_ = options.replicas;
    config.pool = tier::Pool::from_specs(mem_path.tiers, rt->remote_factory_, options.replicas);
    uint64_t pool_capacity = config.pool->capacity();
    config.budget_bytes = dram_auto ? control::DramAutoController::initial_budget({}, options.block_size, pool_capacity)
                                    : *mem_path.dram_bytes;
    rt->engine_ = core::Engine::create(std::move(config));

    rt->guest_ram_bytes_ = options.guest_ram_bytes;
    if (!rt->guest_ram_bytes_) {
      // The heap arena: the whole pool's worth of address space (plus the static DRAM).
      uint64_t arena_bytes = pool_capacity + (dram_auto ? 0 : *mem_path.dram_bytes);
      arena_bytes = (arena_bytes + kArenaAlignment - 1) & ~(kArenaAlignment - 1);
      auto reserved = os::Mapping::anonymous(arena_bytes, kArenaAlignment);
      if (!reserved)
        throw std::system_error(reserved.status().code(), std::generic_category(),
                                "reserving " + format_size(arena_bytes) + " of address space for the heap");
      uintptr_t base = reinterpret_cast<uintptr_t>(reserved->release());  // the engine and arena keep it
      throw_if_error(rt->engine_->adopt(reinterpret_cast<void*>(base), arena_bytes, /*reserve_pool=*/false));
      rt->arena_ = std::make_unique<HeapArena>(base, arena_bytes);
      EMP_INFO("preload", "heap arena %s at %#lx; DRAM %s%s", format_size(arena_bytes).c_str(), base,
               format_size(rt->engine_->budget()).c_str(), dram_auto ? " (auto)" : "");
    } else {
      // emp-qemu: only the guest RAM is managed, and QEMU's own children run without EMP.
      scrub_environment();
      EMP_INFO("preload", "guest-RAM mode: managing the %s guest RAM mapping; DRAM %s%s",
               format_size(rt->guest_ram_bytes_).c_str(), format_size(rt->engine_->budget()).c_str(),
               dram_auto ? " (auto)" : "");
    }

    rt->mem_path_ = path;
    rt->start_control(path, dram_auto);

    if (int error = pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child))
      throw std::system_error(error, std::generic_category(), "pthread_atfork");
    g_runtime.store(rt, std::memory_order_release);
    return rt;
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
}

// The control socket (and dram:auto) are conveniences: when they cannot start, EMP runs
// without them and says why.
void Runtime::start_control(const char* mem_path, bool dram_auto) {
  try {
    if (dram_auto) dram_auto_ = control::DramAutoController::start(*engine_);
  } catch (const std::exception& e) {
    EMP_WARN("preload", "dram:auto is off (%s); the DRAM budget stays at %s", e.what(),
             format_size(engine_->budget()).c_str());
  }
  try {
    control::ControlInfo info;
    info.mem_path = mem_path;
    info.dram_auto = dram_auto_ != nullptr;
    info.dram_auto_controller = dram_auto_.get();
    control_ = control::ControlServer::start(*engine_, info);
  } catch (const std::exception& e) {
    EMP_WARN("preload", "no control socket (%s): `emp stats` and `emp resize` cannot reach this process", e.what());
  }
}

void Runtime::note_wipe_on_fork(uintptr_t start, size_t length, bool wipe) noexcept {
  std::lock_guard lock(wipe_mutex_);
  if (!wipe && wipe_on_fork_.empty()) return;
  try {
    if (wipe) {
      wipe_on_fork_.add(start, start + length);
    } else {
      wipe_on_fork_.remove(start, start + length);
    }
  } catch (const std::bad_alloc&) {
    EMP_LOG_LIMITED(log::Level::kError, "preload", "no memory to record MADV_WIPEONFORK of %#lx (+%zu bytes)", start,
                    length);
  }
}

bool Runtime::wiped_on_fork(uintptr_t start, size_t length) const noexcept {
  return wipe_on_fork_.contains(start, start + length);
}

namespace {
thread_local bool t_fork_prepared = false;  // this thread's fork() already made the share
}  // namespace

std::unique_ptr<tier::ChildShare> Runtime::make_fork_share(bool* refused) noexcept {
  *refused = false;
  try {
    tier::Pool& pool = engine_->pool();
    auto share = std::make_unique<tier::ChildShare>();
    share->preparations = pool.prepare_child_tiers();
    // emp-qemu's children (helpers that exec) never touch the guest RAM: no copy to hold.
    const uint64_t bytes = guest_ram_bytes_ ? 0 : engine_->fork_copy_bytes();
    if (Status status = pool.share_with_child(bytes, *share); !status) {
      *refused = true;
      EMP_ERROR("preload",
                "fork() refused: the child's copy of the memory needs %s of second-tier space, and the second tier "
                "(%s; %s reserved, %s not in use) cannot hold it beside this process's data: %s. Give the memory "
                "path more second-tier space, or start the child with posix_spawn/vfork (no copy)",
                format_size(bytes).c_str(), format_size(pool.capacity()).c_str(), format_size(pool.reserved()).c_str(),
                format_size(pool.free_bytes()).c_str(), status.to_string().c_str());
    }
    return share;
  } catch (const std::exception& e) {
    EMP_ERROR("preload", "fork: %s", e.what());
    *refused = true;
    return nullptr;
  }
}

bool Runtime::prepare_fork() noexcept {
  InternalScope scope;
  fork_mutex_.lock();
  bool refused = false;
  fork_share_ = make_fork_share(&refused);
  if (refused) {
    if (fork_share_) engine_->pool().end_child(*fork_share_);
    fork_share_.reset();  // closes the connections prepared for the child
    fork_mutex_.unlock();
    return false;
  }
  t_fork_prepared = true;
  return true;
}

void Runtime::before_fork() noexcept {
  Runtime* rt = runtime();
  if (!rt || !rt->active()) return;
  InternalScope scope;
  if (!t_fork_prepared) {
    // A fork that did not come through fork() (glibc's daemon(), _Fork callers): the
    // child gets what can be had; without a share it evicts into tiers of its own.
    rt->fork_mutex_.lock();
    bool refused = false;
    rt->fork_share_ = rt->make_fork_share(&refused);
  }
  t_fork_prepared = false;
  // No signal handler may run until both processes' engines serve faults again: the
  // parent's engine threads are parked, and the child's memory is registered with its new
  // userfaultfd before its fault threads exist. A handler whose stack is managed memory
  // (stress-ng puts its alternate signal stacks there) would fault, and a thread with
  // a signal pending cannot wait for that fault to be served: it spins in the kernel.
  // fork() copies the mask; after_fork_* restore it.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &rt->fork_saved_mask_);
  rt->wipe_mutex_.lock();
  // The child holds one end for its life (and its children inherit it); the parent's
  // watch thread learns from the other when the child's share may come back.
  int fds[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    EMP_ERROR("preload", "fork: socketpair: %s; the child's share of the second tier stays reserved",
              std::strerror(errno));
  rt->fork_parent_end_ = UniqueFd(fds[0]);
  rt->fork_child_end_ = UniqueFd(fds[1]);
  rt->engine_->hold_for_fork();
  if (rt->arena_) rt->arena_->lock();
}

void Runtime::after_fork_in_parent() noexcept {
  Runtime* rt = runtime();
  if (!rt || !rt->active()) return;
  InternalScope scope;
  if (rt->arena_) rt->arena_->unlock();
  rt->engine_->release_after_fork_in_parent();
  rt->fork_child_end_.reset();  // if fork() failed, the watch sees end-of-file and gives the share back
  if (rt->fork_share_) {
    // The child's connections are the child's now: close this process's copies quietly.
    for (auto& preparation : rt->fork_share_->preparations)
      if (preparation) preparation->abandon();
    rt->fork_share_->preparations.clear();
    if (rt->fork_parent_end_.valid()) {
      try {
        tier::start_fork_watch(rt->engine_->pool(), std::move(rt->fork_parent_end_), std::move(rt->fork_share_));
      } catch (const std::exception& e) {
        EMP_ERROR("preload", "fork: cannot watch the child (%s); its share of the second tier stays reserved", e.what());
      }
    }
    (void)rt->fork_share_.release();  // without a watch the share is never given back (it may be in use)
  }
  rt->fork_parent_end_.reset();
  rt->wipe_mutex_.unlock();
  rt->fork_mutex_.unlock();
  pthread_sigmask(SIG_SETMASK, &rt->fork_saved_mask_, nullptr);
}

void Runtime::after_fork_in_child() noexcept {
  Runtime* rt = runtime();
  if (!rt || !rt->active()) return;
  InternalScope scope;
  if (rt->arena_) rt->arena_->unlock();
  rt->wipe_mutex_.unlock();
  rt->fork_mutex_.unlock();
  rt->fork_parent_end_.reset();
  // None of the parent's EMP threads exists here: start a new engine on the same regions,
  // over a pool of the child's own (tier/fork_watch.h).
  try {
    if (!rt->fork_share_) throw std::runtime_error("no second-tier share was prepared for this process");
    if (rt->fork_child_end_.valid()) rt->lineage_.push_back(std::move(rt->fork_child_end_));
    auto own_tiers = tier::Pool::tiers_from_specs(rt->tier_specs_, rt->remote_factory_, rt->replicas_, /*lazy=*/true);
    auto pool = rt->engine_->pool().continue_in_child(*rt->fork_share_, std::move(own_tiers));
    (void)rt->fork_share_.release();  // the parent's bookkeeping; nothing to free here
    rt->engine_->pool().abandon_in_child();  // the parent's connections and rings stay the parent's
    std::unique_ptr<core::Engine> child = rt->engine_->continue_in_child(std::move(pool));
    (void)rt->engine_.release();  // the parent's engine object: its threads are not here
    rt->engine_ = std::move(child);
    rt->wipe_on_fork_.for_each([&](uintptr_t start, uintptr_t end) {
      (void)rt->engine_->discard_range(reinterpret_cast<void*>(start), end - start);
    });
    // The parent's control socket and dram:auto belong to the parent.
    (void)rt->control_.release();
    bool dram_auto = rt->dram_auto_ != nullptr;
    (void)rt->dram_auto_.release();
    rt->start_control(rt->mem_path_.c_str(), dram_auto);
    pthread_sigmask(SIG_SETMASK, &rt->fork_saved_mask_, nullptr);  // the engine serves faults now
    return;
  } catch (const std::exception& e) {
    EMP_ERROR("preload", "forked child %d cannot start EMP (%s): it keeps the memory resident at the fork only",
              static_cast<int>(getpid()), e.what());
  }
  rt->mode_.store(Mode::kForkedChild, std::memory_order_release);
  // The kernel dropped the userfaultfd registration: memory the parent had evicted must
  // not silently read as zeros.
  bool marked = false;
  auto mark = [](uintptr_t start, size_t length, void* context) {
    auto* self = static_cast<std::pair<Runtime*, bool*>*>(context);
    if (self->first->wiped_on_fork(start, length)) return;
    if (os::raw_mprotect(reinterpret_cast<void*>(start), length, PROT_NONE) == 0) *self->second = true;
  };
  std::pair<Runtime*, bool*> context{rt, &marked};
  rt->engine_->for_each_absent_range(mark, &context);
  if (marked) {
    struct sigaction action {};
    action.sa_sigaction = child_segv_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, &g_previous_segv);
  }
  pthread_sigmask(SIG_SETMASK, &rt->fork_saved_mask_, nullptr);
}

void Runtime::at_quick_exit() noexcept {
  if (active() && control_) control_->unlink_if_owner();
}

void Runtime::at_exit() noexcept {
  if (!active()) return;
  InternalScope scope;
  if (control_) control_->unlink_if_owner();
  if (!engine_->options().print_stats) return;
  try {
    std::string text = "EMP statistics (pid " + std::to_string(getpid()) + ")\n" + engine_->stats().to_text();
    ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
    (void)ignored;
  } catch (...) {
  }
}

}  // namespace emp::preload
