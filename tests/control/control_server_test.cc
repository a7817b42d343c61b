// The control server against a real Engine with a file tier: stats fields, resize,
// malformed requests, slow and excess clients, and peers of another uid.
#include "control_test_util.h"

#include <functional>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

namespace emp::control {
namespace {

using namespace std::chrono_literals;

TEST(ControlServer, StatsFieldsArePresentAndConsistent) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  auto memory = served.engine->map(32 << 20);
  ASSERT_TRUE(memory);
  touch(*memory, 32 << 20);
  ControlClient client = ControlClient::connect_pid(::getpid());
  JsonValue reply = client.request("stats");
  EXPECT_EQ(reply.u64("pid"), static_cast<uint64_t>(::getpid()));
  const JsonValue* stats = reply.find("stats");
  ASSERT_TRUE(stats && stats->is_object());
  for (const char* key : {"faults", "faults_zero", "faults_fetch", "faults_local", "faults_write_protect", "prefetched",
                          "fault_p50_us",
                          "fault_p99_us", "fetch_p50_us", "fetch_p99_us", "evictions_clean", "evictions_dirty",
                          "evictions_direct", "io_errors", "resident_bytes", "budget_bytes", "peak_resident_bytes",
                          "managed_bytes", "metadata_bytes", "regions", "pool_capacity", "pool_reserved", "bytes_read",
                          "bytes_written", "tiers"})
    EXPECT_TRUE(stats->has(key)) << key;
  const JsonValue& s = *stats;
  EXPECT_EQ(s.u64("faults"), s.u64("faults_zero") + s.u64("faults_fetch") + s.u64("faults_local"));
  const uint64_t blocks = (32u << 20) / served.engine->options().block_size;
  // A handler counts its fault after waking the thread, so the last ones may still be in flight.
  // Readahead fills some blocks without a fault of their own (`prefetched`).
  EXPECT_GE(s.u64("faults") + s.u64("prefetched"), blocks - served.engine->options().fault_threads);
  EXPECT_GE(s.u64("faults_zero") + s.u64("prefetched"), blocks * 9 / 10);  // first touches: zeros, no I/O
  EXPECT_GT(s.u64("evictions_dirty"), 0u);
  EXPECT_EQ(s.u64("budget_bytes"), 8u << 20);
  EXPECT_LE(s.u64("resident_bytes"), s.u64("budget_bytes") + served.engine->slack());
  EXPECT_LE(s.u64("resident_bytes"), s.u64("peak_resident_bytes"));
  EXPECT_EQ(s.u64("managed_bytes"), 32u << 20);
  EXPECT_GT(s.u64("metadata_bytes"), 0u);
  EXPECT_LE(s.number("fault_p50_us"), s.number("fault_p99_us"));
  const JsonValue* tiers = s.find("tiers");
  ASSERT_TRUE(tiers && tiers->is_array());
  ASSERT_EQ(tiers->items().size(), 1u);
  const JsonValue& tier = tiers->items()[0];
  EXPECT_EQ(tier.str("name").rfind("file:", 0), 0u) << tier.str("name");
  EXPECT_EQ(tier.str("health"), "healthy");
  EXPECT_EQ(tier.u64("bytes_written"), s.u64("bytes_written"));
  EXPECT_GE(s.u64("bytes_written"), (24u << 20));
  const JsonValue* dram = reply.find("dram");
  ASSERT_TRUE(dram);
  EXPECT_EQ(dram->str("mode"), "static");
  EXPECT_EQ(dram->u64("slack_bytes"), served.engine->slack());

  JsonValue info = client.request("info");  // same connection, second request
  EXPECT_EQ(info.u64("pid"), static_cast<uint64_t>(::getpid()));
  EXPECT_EQ(info.u64("managed_bytes"), 32u << 20);
  EXPECT_EQ(info.str("mem_path"), "dram:8|test");
  EXPECT_FALSE(info.str("program").empty());
  EXPECT_EQ(info.u64("block_size"), served.engine->options().block_size);
  JsonValue donors = client.request("donors");
  ASSERT_TRUE(donors.find("tiers") && donors.find("tiers")->items().size() == 1);
  EXPECT_EQ(donors.find("tiers")->items()[0].str("kind"), "file");
  EXPECT_EQ(donors.u64("remote"), 0u);
  ASSERT_TRUE(served.engine->release(*memory));
}

TEST(ControlServer, ResizeChangesTheBudgetAndResidentFollows) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  const size_t bytes = 64 << 20;
  auto memory = served.engine->map(bytes);
  ASSERT_TRUE(memory);
  touch(*memory, bytes);
  uint64_t slack = served.engine->slack();
  EXPECT_LE(served.engine->resident(), (8u << 20) + slack);

  ControlClient client = ControlClient::connect_pid(::getpid());
  JsonValue grown = client.request("resize " + std::to_string(40 << 20));
  EXPECT_EQ(grown.u64("budget_bytes"), 40u << 20);
  EXPECT_EQ(served.engine->budget(), 40u << 20);
  EXPECT_FALSE(grown.has("note"));
  touch(*memory, bytes);
  EXPECT_GT(served.engine->resident(), 16u << 20) << "resident memory did not grow into the larger budget";
  EXPECT_LE(served.engine->resident(), (40u << 20) + slack);

  JsonValue shrunk = client.request("resize 4M");
  EXPECT_EQ(shrunk.u64("budget_bytes"), 4u << 20);
  for (int i = 0; i < 200 && served.engine->resident() > (4u << 20) + slack; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_LE(served.engine->resident(), (4u << 20) + slack) << "the evictor did not follow the smaller budget";

  JsonValue tiny = client.request("resize 1");
  EXPECT_EQ(tiny.u64("budget_bytes"), 4 * served.engine->options().block_size);
  EXPECT_NE(tiny.str("note").find("minimum"), std::string::npos);
  ASSERT_TRUE(served.engine->release(*memory));
}

TEST(ControlServer, ResizeSwitchesDramAutoOffAndAutoSwitchesItOn) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, true);
  ControlClient client = ControlClient::connect_pid(::getpid());
  ASSERT_TRUE(served.dram_auto->enabled());
  EXPECT_EQ(client.request("stats").find("dram")->str("mode"), "auto");
  JsonValue reply = client.request("resize 12M");
  EXPECT_EQ(reply.u64("budget_bytes"), 12u << 20);
  EXPECT_NE(reply.str("note").find("dram:auto switched off"), std::string::npos);
  EXPECT_FALSE(served.dram_auto->enabled());
  EXPECT_EQ(client.request("info").find("dram")->str("mode"), "auto (off)");
  served.dram_auto->step();
  EXPECT_EQ(served.engine->budget(), 12u << 20);
  reply = client.request("resize auto");
  EXPECT_TRUE(served.dram_auto->enabled());
  EXPECT_NE(reply.str("note").find("on again"), std::string::npos);
}

TEST(ControlServer, MalformedRequestsGetErrorReplies) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  ControlClient client = ControlClient::connect_pid(::getpid());
  for (const char* bad : {"", "bogus", "STATS", "resize", "resize abc", "resize -5", "resize 0", "resize 99999999999999999999",
                          "stats extra", "info\x01", "resize 1E", "donors now"}) {
    std::string raw = client.request_raw(bad);
    auto reply = JsonValue::parse(raw);
    ASSERT_TRUE(reply) << "not JSON for '" << bad << "': " << raw;
    EXPECT_FALSE(reply->boolean("ok", true)) << bad;
    EXPECT_FALSE(reply->str("error").empty()) << bad;
  }
  EXPECT_EQ(served.engine->budget(), 8u << 20);
  EXPECT_TRUE(client.request("help").has("help"));

  // A request longer than the limit: an error, then the connection is closed.
  std::string raw = client.request_raw(std::string(3000, 'x'));
  EXPECT_NE(raw.find("longer than"), std::string::npos) << raw;
  EXPECT_THROW(client.request_raw("info"), ControlClientError);

  // Binary garbage and a request without '\n' ended by a half-close.
  int fd = connect_raw(served.server->socket_path());
  std::string garbage("\xff\xfe\x00\x01stats\n", 10);
  ASSERT_EQ(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL), static_cast<ssize_t>(garbage.size()));
  ASSERT_EQ(::send(fd, "info", 4, MSG_NOSIGNAL), 4);
  ::shutdown(fd, SHUT_WR);
  std::string all = read_all(fd, 5s);
  ::close(fd);
  auto newline = all.find('\n');
  ASSERT_NE(newline, std::string::npos) << all;
  EXPECT_NE(all.substr(0, newline).find("\"ok\":false"), std::string::npos) << all;
  EXPECT_NE(all.substr(newline + 1).find("\"ok\":true"), std::string::npos) << all;

  // The server still serves.
  EXPECT_EQ(ControlClient::connect_pid(::getpid()).request("info").u64("pid"), static_cast<uint64_t>(::getpid()));
}

TEST(ControlServer, ASlowClientDoesNotBlockOthersAndIsDisconnected) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  int slow = connect_raw(served.server->socket_path());
  ASSERT_EQ(::send(slow, "sta", 3, MSG_NOSIGNAL), 3);  // and then nothing
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ControlClient::connect_pid(::getpid(), 1000ms).request("stats").has("stats"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  std::string rest = read_all(slow, ControlServer::kClientTimeout + 3s);
  ::close(slow);
  EXPECT_EQ(rest, "") << "an idle client was answered instead of disconnected";
  EXPECT_GE(std::chrono::steady_clock::now() - start, ControlServer::kClientTimeout - 500ms);
}

TEST(ControlServer, ExcessClientsAreToldTheServerIsBusy) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  std::vector<int> fds;
  for (size_t i = 0; i < ControlServer::kMaxClients; ++i) fds.push_back(connect_raw(served.server->socket_path()));
  std::this_thread::sleep_for(100ms);  // let the server accept them
  int extra = connect_raw(served.server->socket_path());
  std::string reply = read_all(extra, 3s);
  EXPECT_NE(reply.find("busy"), std::string::npos) << reply;
  ::close(extra);
  for (int fd : fds) ::close(fd);
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(ControlClient::connect_pid(::getpid()).request("info").has("pid"));
}

TEST(ControlServer, SocketIsPrivateAndRemovedWithTheServer) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  std::string path = served.server->socket_path();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 077, 0u);
  std::string dir = path.substr(0, path.find_last_of('/'));
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  served.server.reset();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST(ControlServer, RefusesADirectoryOpenToOthers) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  char name[] = "/tmp/emp-open-XXXXXX";
  std::string dir = ::mkdtemp(name);
  ::chmod(dir.c_str(), 0777);
  ControlInfo info;
  info.socket_directory = dir;
  try {
    ControlServer::start(*served.engine, info);
    ADD_FAILURE() << "a world-writable socket directory was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

// A peer of another uid: refused by the directory's permissions, and — should the
// directory and socket be opened up by mistake — by the SO_PEERCRED check.
TEST(ControlServer, ClientsOfAnotherUidAreRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another uid (setresuid)";
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  constexpr uid_t kNobody = 65534;
  auto as_nobody = [](const std::function<int()>& body) {
    pid_t child = ::fork();
    if (child == 0) {
      if (::setresgid(kNobody, kNobody, kNobody) != 0 || ::setresuid(kNobody, kNobody, kNobody) != 0) ::_exit(90);
      ::_exit(body());
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
  };
  std::string path = served.server->socket_path();
  // 1: the default directory is 0700: the connect itself is denied.
  int code = as_nobody([&] {
    try {
      ControlClient::connect_path(path, ::getppid()).request("stats");
      return 1;
    } catch (const ControlClientError& e) {
      return e.kind == ControlClientError::Kind::kPermissionDenied ? 0 : 2;
    }
  });
  EXPECT_EQ(code, 0);

  // 2: a second server in a directory later opened to everybody: the peer check refuses.
  char name[] = "/tmp/emp-peer-XXXXXX";
  std::string dir = ::mkdtemp(name);
  ControlInfo info;
  info.socket_directory = dir;
  auto open_server = ControlServer::start(*served.engine, info);
  ::chmod(dir.c_str(), 0711);
  ::chmod(open_server->socket_path().c_str(), 0666);
  std::string open_path = open_server->socket_path();
  code = as_nobody([&] {
    try {
      ControlClient::connect_path(open_path, ::getppid()).request("resize 4096");
      return 1;
    } catch (const ControlClientError& e) {
      bool named = std::string(e.what()).find("uid 65534") != std::string::npos;
      return e.kind == ControlClientError::Kind::kPermissionDenied && named ? 0 : 3;
    }
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(served.engine->budget(), 8u << 20);
  open_server.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace emp::control
