#include "control/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "common/log.h"
#include "common/size_parse.h"
#include "control/dram_auto.h"
#include "control/json.h"
#include "tier/mirrored_tier.h"
#include "control/socket_location.h"
#include "core/engine.h"

namespace emp::control {
namespace {

using Clock = std::chrono::steady_clock;

std::string read_proc_text(const char* path) {
  std::string text;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0 && text.size() < 16384) text.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return text;
}

std::string error_reply(std::string_view message) {
  std::string out = "{\"ok\":false,\"error\":";
  append_json_string(out, message);
  out += "}";
  return out;
}

// A small appender for flat JSON objects.
class JsonObject {
 public:
  JsonObject() : text_("{") {}
  JsonObject& raw(std::string_view key, std::string_view json) {
    if (text_.size() > 1) text_ += ',';
    append_json_string(text_, key);
    text_ += ':';
    text_ += json;
    return *this;
  }
  JsonObject& num(std::string_view key, uint64_t value) { return raw(key, std::to_string(value)); }
  JsonObject& str(std::string_view key, std::string_view value) { return raw(key, json_quote(value)); }
  JsonObject& boolean(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
  std::string done() { return text_ + "}"; }

 private:
  std::string text_;
};

void send_best_effort(int fd, const std::string& text) noexcept {
  [[maybe_unused]] ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

const char* tier_kind(const tier::Tier& tier) {
  if (tier.donor_state()) return "remote";
  if (dynamic_cast<const tier::MirroredTier*>(&tier)) return "mirror";
  if (tier.name().rfind("device:", 0) == 0) return "device";
  if (tier.name().rfind("file:", 0) == 0) return "file";
  return "memory";
}

constexpr const char* kHelp =
    "requests: info | stats | resize <bytes> | resize auto | donors | help (one per line, JSON replies)";

}  // namespace

ControlServer::ControlServer(core::Engine& engine, ControlInfo info) : engine_(engine), info_(std::move(info)) {}

std::unique_ptr<ControlServer> ControlServer::start(core::Engine& engine, ControlInfo info) {
  std::unique_ptr<ControlServer> server(new ControlServer(engine, std::move(info)));
  ControlInfo& i = server->info_;
  if (i.program.empty()) {
    i.program = read_proc_text("/proc/self/comm");
    while (!i.program.empty() && i.program.back() == '\n') i.program.pop_back();
  }
  if (i.command_line.empty()) {
    i.command_line = read_proc_text("/proc/self/cmdline");
    while (!i.command_line.empty() && i.command_line.back() == '\0') i.command_line.pop_back();
    std::replace(i.command_line.begin(), i.command_line.end(), '\0', ' ');
  }
  server->uid_ = ::geteuid();
  server->owner_pid_ = ::getpid();
  server->started_ = std::chrono::system_clock::now();
  std::string directory =
      i.socket_directory.empty() ? default_socket_directory(server->uid_, std::getenv("XDG_RUNTIME_DIR")) : i.socket_directory;
  ensure_private_directory(directory, server->uid_);
  remove_stale_sockets(directory);
  server->path_ = control::socket_path(directory, server->owner_pid_);

  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  if (server->path_.size() >= sizeof address.sun_path)
    throw std::runtime_error("control socket path " + server->path_ + " is longer than " +
                             std::to_string(sizeof address.sun_path - 1) + " bytes");
  std::memcpy(address.sun_path, server->path_.c_str(), server->path_.size() + 1);
  server->listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!server->listen_fd_.valid()) throw std::system_error(errno, std::generic_category(), "control socket");
  ::unlink(server->path_.c_str());  // a socket left by an earlier process with our pid
  if (::bind(server->listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    throw std::system_error(errno, std::generic_category(), "binding the control socket " + server->path_);
  ::chmod(server->path_.c_str(), 0600);
  if (::listen(server->listen_fd_.get(), 16) != 0) {
    int error = errno;
    ::unlink(server->path_.c_str());
    throw std::system_error(error, std::generic_category(), "listening on the control socket " + server->path_);
  }
  server->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->stop_fd_.valid()) {
    int error = errno;
    ::unlink(server->path_.c_str());
    throw std::system_error(error, std::generic_category(), "control socket: eventfd");
  }
  try {
    server->thread_ = std::thread([s = server.get()] { s->run(); });
  } catch (...) {
    ::unlink(server->path_.c_str());
    throw;
  }
  EMP_INFO("control", "serving %s", server->path_.c_str());
  return server;
}

void ControlServer::unlink_if_owner() const noexcept {
  if (::getpid() == owner_pid_ && !path_.empty()) ::unlink(path_.c_str());
}

ControlServer::~ControlServer() {
  if (::getpid() != owner_pid_) {
    // A forked child: the thread and the socket belong to the parent.
    if (thread_.joinable()) thread_.detach();
    return;
  }
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }
  if (!path_.empty()) ::unlink(path_.c_str());
}

// ---- the serving thread --------------------------------------------------------------

void ControlServer::run() noexcept {
  pthread_setname_np(pthread_self(), "emp-control");
  struct Client {
    UniqueFd fd;
    std::string in, out;
    Clock::time_point deadline;
    bool closing = false;  // close once `out` is sent
  };
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    try {
      fds.clear();
      fds.push_back({stop_fd_.get(), POLLIN, 0});
      fds.push_back({listen_fd_.get(), POLLIN, 0});
      Clock::time_point now = Clock::now();
      int timeout_ms = -1;
      for (const auto& c : clients) {
        short events = static_cast<short>((c.closing ? 0 : POLLIN) | (c.out.empty() ? 0 : POLLOUT));
        fds.push_back({c.fd.get(), events, 0});
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count();
        int ms = static_cast<int>(std::clamp<long long>(left + 1, 0, 60000));
        timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
      }
      int ready = ::poll(fds.data(), fds.size(), timeout_ms);
      if (ready < 0 && errno != EINTR) {
        EMP_ERROR_LIMITED("control", "poll: %s", std::strerror(errno));
        ::usleep(100000);
        continue;
      }
      if (fds[0].revents) return;
      now = Clock::now();

      for (size_t i = 0; i < clients.size(); ++i) {
        Client& c = clients[i];
        short revents = fds[i + 2].revents;
        bool drop = false;
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          bool eof = false;
          char buffer[2048];
          for (;;) {
            ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
            if (n > 0) {
              c.in.append(buffer, static_cast<size_t>(n));
              if (c.in.size() > 4 * kMaxRequestBytes) break;
              continue;
            }
            if (n == 0) eof = true;
            else if (errno == EINTR) continue;
            else if (errno != EAGAIN && errno != EWOULDBLOCK) drop = true;
            break;
          }
          size_t newline;
          while (!c.closing && (newline = c.in.find('\n')) != std::string::npos) {
            if (newline > kMaxRequestBytes) break;
            c.out += handle(std::string_view(c.in.data(), newline));
            c.out += '\n';
            c.in.erase(0, newline + 1);
          }
          if (!c.closing && (c.in.size() > kMaxRequestBytes)) {
            c.out += error_reply("request longer than " + std::to_string(kMaxRequestBytes) + " bytes") + "\n";
            c.closing = true;
            c.in.clear();
          }
          if (eof && !c.closing) {
            if (!trim(c.in).empty()) c.out += handle(c.in) + "\n";  // a last request without '\n'
            c.in.clear();
            c.closing = true;
          }
          c.deadline = now + kClientTimeout;
        }
        while (!drop && !c.out.empty()) {
          ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n > 0) {
            c.out.erase(0, static_cast<size_t>(n));
            c.deadline = now + kClientTimeout;
          } else if (n < 0 && errno == EINTR) {
            continue;
          } else {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) drop = true;
            break;
          }
        }
        if (drop || (c.closing && c.out.empty()) || now >= c.deadline) c.fd.reset();
      }
      clients.erase(std::remove_if(clients.begin(), clients.end(), [](const Client& c) { return !c.fd.valid(); }),
                    clients.end());

      if (fds[1].revents & POLLIN) {
        for (int accepted = 0; accepted < 64; ++accepted) {
          UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
          if (!fd.valid()) break;
          uid_t peer = 0;
          if (!peer_allowed(fd.get(), uid_, &peer)) {
            EMP_LOG_LIMITED(log::Level::kWarn, "control", "refused a control connection from uid %d",
                            static_cast<int>(peer));
            send_best_effort(fd.get(), error_reply("permission denied: uid " + std::to_string(static_cast<int>(peer)) +
                                                   " may not control this process (owner uid " +
                                                   std::to_string(uid_) + ")") + "\n");
            continue;
          }
          if (clients.size() >= kMaxClients) {
            send_best_effort(fd.get(), error_reply("busy: too many control connections, try again") + "\n");
            continue;
          }
          clients.push_back(Client{std::move(fd), {}, {}, Clock::now() + kClientTimeout, false});
        }
      }
    } catch (...) {
      // Out of memory while serving: drop every client and keep the socket alive.
      clients.clear();
      ::usleep(100000);
    }
  }
}

// ---- requests ------------------------------------------------------------------------

std::string ControlServer::handle(std::string_view request) noexcept {
  try {
    request = trim(request);
    if (request.size() > kMaxRequestBytes) return error_reply("request too long");
    for (char ch : request)
      if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t') return error_reply("request contains control characters");
    size_t space = request.find(' ');
    std::string_view command = request.substr(0, space);
    std::string_view argument = space == std::string_view::npos ? std::string_view() : trim(request.substr(space + 1));
    if (command.empty()) return error_reply("empty request; " + std::string(kHelp));
    if (command == "resize") return resize_reply(argument);
    if (!argument.empty()) return error_reply("'" + std::string(command) + "' takes no argument");
    if (command == "info") return info_reply();
    if (command == "stats") return stats_reply();
    if (command == "donors") return donors_reply();
    if (command == "help") return JsonObject().boolean("ok", true).str("help", kHelp).done();
    std::string shown(command.substr(0, 40));
    return error_reply("unknown request '" + shown + "'; " + kHelp);
  } catch (const std::exception& e) {
    try {
      return error_reply(std::string("internal error: ") + e.what());
    } catch (...) {
    }
  } catch (...) {
  }
  return "{\"ok\":false,\"error\":\"internal error\"}";
}

std::string ControlServer::dram_json() const {
  JsonObject dram;
  DramAutoController* controller = info_.dram_auto_controller;
  bool automatic = controller && controller->enabled();
  dram.str("mode", automatic ? "auto" : (info_.dram_auto ? "auto (off)" : "static"))
      .num("budget_bytes", engine_.budget())
      .num("resident_bytes", engine_.resident())
      .num("slack_bytes", engine_.slack());
  dram.raw("auto", controller ? controller->state_json() : "null");
  return dram.done();
}

std::string ControlServer::info_reply() {
  core::EngineStats stats = engine_.stats();
  const Options& options = engine_.options();
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_).count();
  std::string tiers = "[";
  for (size_t i = 0; i < stats.tiers.size(); ++i) {
    if (i) tiers += ',';
    append_json_string(tiers, stats.tiers[i].name);
  }
  tiers += "]";
  return JsonObject()
      .boolean("ok", true)
      .num("pid", static_cast<uint64_t>(owner_pid_))
      .num("uid", uid_)
      .str("program", info_.program)
      .str("command_line", info_.command_line)
      .str("mem_path", info_.mem_path)
      .num("uptime_s", static_cast<uint64_t>(std::max<long long>(uptime, 0)))
      .raw("dram", dram_json())
      .num("budget_bytes", stats.budget_bytes)
      .num("resident_bytes", stats.resident_bytes)
      .num("peak_resident_bytes", stats.peak_resident_bytes)
      .num("managed_bytes", stats.managed_bytes)
      .num("pool_capacity", stats.pool_capacity)
      .num("block_size", options.block_size)
      .num("subblock_size", options.subblock_size)
      .boolean("csf", options.csf)
      .num("fault_threads", options.fault_threads)
      .raw("tiers", tiers)
      .done();
}

std::string ControlServer::stats_reply() {
  return JsonObject()
      .boolean("ok", true)
      .num("pid", static_cast<uint64_t>(owner_pid_))
      .raw("dram", dram_json())
      .raw("stats", engine_.stats().to_json())
      .done();
}

std::string ControlServer::resize_reply(std::string_view argument) {
  DramAutoController* controller = info_.dram_auto_controller;
  if (argument.empty()) return error_reply("usage: resize <bytes> | resize auto");
  if (argument == "auto" || argument == "-1") {
    if (!controller)
      return error_reply("this process was not started with dram:auto, so there is no automatic budget to switch on");
    controller->set_enabled(true, "switched on again by a resize request");
    DramAutoDecision decision = controller->step();
    return JsonObject()
        .boolean("ok", true)
        .num("budget_bytes", engine_.budget())
        .str("note", "dram:auto is on again (" + decision.reason + ")")
        .done();
  }
  auto bytes = parse_size(argument, 1);
  if (!bytes || *bytes == 0)
    return error_reply("resize: '" + std::string(argument.substr(0, 40)) + "' is not a size in bytes (e.g. 268435456 or 256M)");
  if (*bytes > (1ULL << 56)) return error_reply("resize: " + std::string(argument.substr(0, 40)) + " bytes is too large");
  std::string note;
  if (controller && controller->enabled()) {
    controller->override_budget(*bytes, "switched off by a manual resize");
    note = "dram:auto switched off by this manual resize ('resize auto' switches it back on)";
  } else {
    engine_.set_budget(*bytes);
  }
  uint64_t now = engine_.budget();
  if (now != *bytes) {
    if (!note.empty()) note += "; ";
    note += "raised to the minimum of four blocks (" + format_size(now) + ")";
  }
  JsonObject reply;
  reply.boolean("ok", true).num("budget_bytes", now).num("requested_bytes", *bytes).num("resident_bytes", engine_.resident());
  if (!note.empty()) reply.str("note", note);
  return reply.done();
}

std::string ControlServer::donors_reply() {
  tier::Pool& pool = engine_.pool();
  std::string list = "[";
  size_t remote = 0;
  for (size_t i = 0; i < pool.tier_count(); ++i) {
    const tier::Tier& t = pool.tier(i);
    tier::TierCounters counters = t.counters();
    JsonObject item;
    item.str("name", t.name())
        .str("kind", tier_kind(t))
        .str("health", tier::to_string(t.health()))
        .num("capacity", t.capacity())
        .str("describe", t.describe())
        .num("bytes_read", counters.bytes_read)
        .num("bytes_written", counters.bytes_written)
        .num("read_ops", counters.read_ops)
        .num("write_ops", counters.write_ops)
        .num("errors", counters.errors);
    if (const auto* mirror = dynamic_cast<const tier::MirroredTier*>(&t)) {
      item.num("copies", mirror->copy_count())
          .num("degraded_bytes", mirror->degraded_bytes())
          .num("rebuilt_bytes", mirror->rebuilt_bytes());
      for (size_t c = 0; c < mirror->copy_count(); ++c)
        if (mirror->copy(c).donor_state()) ++remote;
    }
    if (auto donor = t.donor_state()) {
      ++remote;
      item.str("provider", donor->provider)
          .num("lease_id", donor->lease_id)
          .num("reconnects", donor->reconnects)
          .boolean("data_lost", donor->data_lost);
    }
    if (i) list += ',';
    list += item.done();
  }
  list += "]";
  return JsonObject().boolean("ok", true).num("pid", static_cast<uint64_t>(owner_pid_)).num("remote", remote).raw("tiers", list).done();
}

}  // namespace emp::control
