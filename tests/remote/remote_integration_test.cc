// Integration tests of vmd and the remote tier with real vmd processes on loopback:
// data integrity (also through a real Engine with two donors and a file in one pool),
// authentication, lease isolation, hostile input, restarts, blips and donor loss.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "core/engine.h"
#include "net/channel.h"
#include "net/control_client.h"
#include "net/remote_factory.h"
#include "net/remote_tier.h"
#include "net/socket.h"
#include "testing/engine_fixture.h"
#include "testing/patterns.h"
#include "tier/pool.h"
#include "vmd_process.h"

namespace emp::testing {
namespace {

using namespace std::chrono_literals;
namespace proto = net::protocol;

#define START_VMD_OR_SKIP(var, ...)                                            \
  std::string var##_error;                                                     \
  auto var = VmdProcess::start(__VA_ARGS__, &var##_error);                     \
  if (!var) GTEST_SKIP() << "cannot run vmd: " << var##_error

std::vector<std::string> vmd_args(std::vector<std::string> extra) {
  auto args = vmd_device_args();
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

net::RemoteConfig fast_config(const std::string& key = "") {
  net::RemoteConfig config;
  config.key = key;
  config.provider = test_provider();
  config.connect_timeout = 2s * time_scale();
  config.op_timeout = 3s * time_scale();
  config.reconnect_window = 5s * time_scale();
  config.heartbeat_interval = 200ms * time_scale();
  return config;
}

// Pattern words of block `index` (each word's value depends on its global index).
std::vector<uint64_t> block_pattern(size_t bytes, uint64_t version, size_t index) {
  std::vector<uint64_t> words(bytes / 8);
  for (size_t i = 0; i < words.size(); ++i) words[i] = pattern_word(index * words.size() + i, version);
  return words;
}

bool block_matches(const std::vector<uint64_t>& words, uint64_t version, size_t index) {
  for (size_t i = 0; i < words.size(); ++i)
    if (words[i] != pattern_word(index * words.size() + i, version)) return false;
  return true;
}

TEST(RemoteTier, ReadsBackWhatItWroteFromManyThreads) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "64"}));
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 32), fast_config());
  constexpr size_t kSub = 16 << 10;
  const size_t blocks = tier->capacity() / kSub;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      // Batches of four subblocks per call, like a 64 KiB block.
      for (size_t b = t * 4; b + 4 <= blocks; b += 12) {
        std::vector<std::vector<uint64_t>> data;
        tier::IoSpan spans[4];
        for (size_t i = 0; i < 4; ++i) {
          data.push_back(block_pattern(kSub, 1, b + i));
          spans[i] = {(b + i) * kSub, data.back().data(), kSub};
        }
        if (!tier->write_batch(spans).is_ok()) ++failures;
      }
      for (size_t b = t * 4; b + 4 <= blocks; b += 12) {
        std::vector<std::vector<uint64_t>> data(4, std::vector<uint64_t>(kSub / 8));
        tier::IoSpan spans[4];
        for (size_t i = 0; i < 4; ++i) spans[i] = {(b + i) * kSub, data[i].data(), kSub};
        if (!tier->read_batch(spans).is_ok()) ++failures;
        for (size_t i = 0; i < 4; ++i)
          if (!block_matches(data[i], 1, b + i)) ++failures;
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(tier->health(), tier::TierHealth::kHealthy);
  EXPECT_EQ(tier->counters().errors, 0u);
}

// The case that made libfabric's shm time out ("RMA batch timed out"): full 64-block
// write-back batches from several threads while both CPUs are busy, with fault-sized
// reads in between; every batch completes and every byte reads back.
TEST(RemoteTier, SixtyFourBlockWriteBatchesCompleteUnderLoad) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "64"}));
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 32), fast_config());
  constexpr size_t kBlock = 64 << 10, kBatch = 64;
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (int i = 0; i < 2; ++i)
    load.emplace_back([&] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (unsigned t = 0; t < 2; ++t)
    writers.emplace_back([&, t] {
      // Each thread owns half of the tier: 4 MiB batches, rewritten with a new version.
      for (uint64_t version = 1; version <= 8; ++version) {
        std::vector<std::vector<uint64_t>> data;
        std::vector<tier::IoSpan> spans;
        for (size_t i = 0; i < kBatch; ++i) data.push_back(block_pattern(kBlock, version, t * kBatch + i));
        for (size_t i = 0; i < kBatch; ++i) spans.push_back({(t * kBatch + i) * kBlock, data[i].data(), kBlock});
        if (!tier->write_batch(spans).is_ok()) ++failures;
        std::vector<uint64_t> one(512);
        for (size_t i = 0; i < kBatch; i += 7) {  // fault-sized reads between batches
          if (!tier->read((t * kBatch + i) * kBlock, one.data(), 4096).is_ok()) ++failures;
          for (size_t w = 0; w < one.size(); ++w)
            if (one[w] != pattern_word((t * kBatch + i) * (kBlock / 8) + w, version)) ++failures;
        }
      }
    });
  for (auto& thread : writers) thread.join();
  stop = true;
  for (auto& thread : load) thread.join();
  EXPECT_EQ(failures.load(), 0);
  std::vector<uint64_t> back(kBlock / 8);
  for (size_t b = 0; b < 2 * kBatch; ++b) {
    ASSERT_TRUE(tier->read(b * kBlock, back.data(), kBlock).is_ok());
    ASSERT_TRUE(block_matches(back, 8, b)) << "block " << b;
  }
  EXPECT_EQ(tier->health(), tier::TierHealth::kHealthy);
  EXPECT_EQ(tier->reconnects(), 0u);
}

TEST(RemoteTier, FewInflightSlotsAndManyThreadsStillCompleteEveryBatch) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  auto config = fast_config();
  config.channel.max_inflight = 3;  // far fewer than one batch: posting must wait for slots
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 16), config);
  constexpr size_t kSub = 4096, kSpans = 32;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<std::vector<uint64_t>> data;
      std::vector<tier::IoSpan> spans;
      for (size_t i = 0; i < kSpans; ++i) {
        size_t block = t * kSpans + i;
        data.push_back(block_pattern(kSub, 9, block));
      }
      for (size_t i = 0; i < kSpans; ++i) spans.push_back({(t * kSpans + i) * kSub, data[i].data(), kSub});
      for (int round = 0; round < 20; ++round) {
        if (!tier->write_batch(spans).is_ok()) ++failures;
        for (auto& d : data) std::fill(d.begin(), d.end(), 0);
        if (!tier->read_batch(spans).is_ok()) ++failures;
        for (size_t i = 0; i < kSpans; ++i)
          if (!block_matches(data[i], 9, t * kSpans + i)) ++failures;
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(RemoteTier, UnreachableDonorStopsWithAMessageNamingTheElement) {
  // A port nothing listens on.
  UniqueFd probe = net::tcp_listen("127.0.0.1", 0);
  uint16_t port = net::local_port(probe.get());
  probe.reset();
  TierSpec spec = remote_spec(port, 64);
  spec.location = "127.0.0.1";
  spec.element = "127.0.0.1:64:" + std::to_string(port);
  try {
    tier::Pool::from_specs({spec}, net::make_remote_factory(Options{}, fast_config()));
    FAIL() << "expected an error";
  } catch (const std::exception& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("memory path element '" + spec.element + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("Connection refused"), std::string::npos) << message;
  }
}

TEST(Auth, RightKeyIsAcceptedWrongOrMissingKeyIsRefused) {
  std::string key_file = write_key_file("correct horse battery staple");
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32", "--auth-key-file", key_file}));
  auto spec = remote_spec(vmd->port(), 8);
  auto tier = net::RemoteTier::connect(spec, fast_config("correct horse battery staple"));
  uint64_t value[512] = {42};
  EXPECT_TRUE(tier->write(0, value, sizeof value).is_ok());

  auto expect_refused = [&](const std::string& key, const std::string& needle) {
    try {
      net::RemoteTier::connect(spec, fast_config(key));
      ADD_FAILURE() << "connected with key '" << key << "'";
    } catch (const std::exception& error) {
      std::string message = error.what();
      EXPECT_NE(message.find(spec.element), std::string::npos) << message;
      EXPECT_NE(message.find(needle), std::string::npos) << message;
    }
  };
  expect_refused("wrong key", "wrong auth key");
  expect_refused("", "requires an auth key");
  // The key from Options (as EMP_AUTH_KEY_FILE would give it) works through the factory.
  Options options;
  options.auth_key_file = key_file;
  auto factory = net::make_remote_factory(options, fast_config());
  EXPECT_NO_THROW(factory(spec));
  EXPECT_TRUE(vmd->alive());
}

TEST(Auth, ClientWithAKeyRefusesAnUnauthenticatedDonor) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "16"}));
  try {
    net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config("some key"));
    FAIL() << "expected an error";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("does not authenticate"), std::string::npos) << error.what();
  }
}

// Builds a raw lease and reads it the way a hostile client with valid credentials
// would, on the data plane under test: raw requests on a tcp data connection, pread on
// the shm memory file, one-sided RMA on verbs.
struct RawClient {
  std::unique_ptr<net::ControlClient> control;
  std::unique_ptr<net::Domain> domain;
  std::unique_ptr<net::Channel> channel;
  UniqueFd memory_file;
  proto::LeaseGrant grant{};

  RawClient(uint16_t port, uint64_t bytes) {
    net::ControlConfig config{test_host(), port, "", 2s * time_scale()};
    config.local = test_provider() == net::Provider::kShm;
    control = net::ControlClient::connect(config);
    grant = control->lease(bytes, test_provider(), std::nullopt);
    if (test_provider() == net::Provider::kShm) {
      memory_file = control->take_passed_fd();
    } else if (test_provider() == net::Provider::kVerbs) {
      net::DomainOptions options;
      options.provider = test_provider();
      options.node = control->peer();
      options.service = std::to_string(port);
      domain = net::Domain::open(options);
      proto::DataConnect request{proto::kDataMagic, proto::kVersion, 0, grant.lease_id, {}};
      std::memcpy(request.ticket, grant.ticket, sizeof request.ticket);
      channel = net::Channel::connect(*domain, control->peer(), grant.data_port,
                                      {reinterpret_cast<const uint8_t*>(&request), sizeof request},
                                      net::deadline_after(2s * time_scale()));
    }
  }
  // Reads with the lease's credentials, or with forged ones (a flipped key or ticket).
  Status read(uint64_t offset, void* buffer, size_t length, bool forged = false) {
    switch (test_provider()) {
      case net::Provider::kShm: {
        // The descriptor is the capability: it reaches this lease's file and nothing else.
        ssize_t n = ::pread(memory_file.get(), buffer, length, static_cast<off_t>(offset));
        return n == static_cast<ssize_t>(length) ? Status::ok() : Status::error(EIO, "short read");
      }
      case net::Provider::kVerbs: {
        auto mr = domain->register_memory(buffer, length, FI_READ | FI_WRITE, domain->random_key());
        net::MemoryRegion region(mr ? *mr : nullptr);
        net::RmaOp op{buffer, length, region.desc(), grant.remote_base + offset};
        return channel->read({&op, 1}, grant.mr_key ^ (forged ? 1 : 0), net::deadline_after(3s * time_scale()));
      }
      case net::Provider::kTcp: {
        std::string error;
        UniqueFd fd = net::tcp_connect(control->peer(), grant.data_port, net::deadline_after(2s), &error);
        if (!fd.valid()) return Status::error(ECONNREFUSED, error.c_str());
        proto::DataConnect hello{proto::kDataMagic, proto::kVersion, 0, grant.lease_id, {}};
        std::memcpy(hello.ticket, grant.ticket, sizeof hello.ticket);
        if (forged) hello.ticket[0] ^= 1;
        proto::DataAccept accept{};
        Status status = net::send_all(fd.get(), {reinterpret_cast<uint8_t*>(&hello), sizeof hello}, net::deadline_after(2s));
        if (status) status = net::recv_all(fd.get(), {reinterpret_cast<uint8_t*>(&accept), sizeof accept}, net::deadline_after(2s));
        if (!status) return status;
        if (accept.status != 0) return Status::error(static_cast<int>(accept.status), "data connection refused");
        proto::DataRequest request{static_cast<uint32_t>(proto::DataOp::kRead), static_cast<uint32_t>(length), offset};
        proto::DataReply reply{};
        status = net::send_all(fd.get(), {reinterpret_cast<uint8_t*>(&request), sizeof request}, net::deadline_after(2s));
        if (status) status = net::recv_all(fd.get(), {reinterpret_cast<uint8_t*>(&reply), sizeof reply}, net::deadline_after(2s));
        if (!status) return status;
        if (reply.status != 0) return Status::error(static_cast<int>(reply.status), "read refused");
        return net::recv_all(fd.get(), {static_cast<uint8_t*>(buffer), length}, net::deadline_after(2s));
      }
    }
    return Status::error(EINVAL, "provider");
  }
};

TEST(Isolation, AClientCannotReadOutsideItsLease) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  // A neighbour lease holding a secret right after ours.
  auto neighbour = net::RemoteTier::connect(remote_spec(vmd->port(), 4), fast_config());
  std::vector<uint64_t> secret(512, 0x5ec7e75ec7e7ULL);
  for (uint64_t off = 0; off < (4 << 20); off += 4096) ASSERT_TRUE(neighbour->write(off, secret.data(), 4096).is_ok());

  RawClient client(vmd->port(), 1 << 20);
  std::vector<uint64_t> buffer(512);
  EXPECT_TRUE(client.read((1 << 20) - 4096, buffer.data(), 4096).is_ok());
  RawClient second(vmd->port(), 1 << 20);
  // Past the end of the lease, before its start, and with a wrong key or ticket.
  EXPECT_FALSE(second.read(1 << 20, buffer.data(), 4096).is_ok());
  RawClient third(vmd->port(), 1 << 20);
  EXPECT_FALSE(third.read(static_cast<uint64_t>(-(4096 * 16)), buffer.data(), 4096).is_ok());
  if (test_provider() != net::Provider::kShm) {  // shm has no key: the descriptor is the capability
    RawClient fourth(vmd->port(), 1 << 20);
    EXPECT_FALSE(fourth.read(0, buffer.data(), 4096, /*forged=*/true).is_ok());
  }
  for (uint64_t word : buffer) EXPECT_NE(word, secret[0]);
  // vmd is unharmed and still serves.
  EXPECT_TRUE(vmd->alive());
  std::vector<uint64_t> check(512);
  EXPECT_TRUE(neighbour->read(0, check.data(), 4096).is_ok());
  EXPECT_EQ(check, secret);
}

TEST(Isolation, TwoClientsDoNotSeeEachOthersData) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  auto a = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
  auto b = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
  for (size_t i = 0; i < 64; ++i) {
    auto pa = block_pattern(16 << 10, 1, i), pb = block_pattern(16 << 10, 2, i);
    ASSERT_TRUE(a->write(i * (16 << 10), pa.data(), 16 << 10).is_ok());
    ASSERT_TRUE(b->write(i * (16 << 10), pb.data(), 16 << 10).is_ok());
  }
  for (size_t i = 0; i < 64; ++i) {
    std::vector<uint64_t> ra(2048), rb(2048);
    ASSERT_TRUE(a->read(i * (16 << 10), ra.data(), 16 << 10).is_ok());
    ASSERT_TRUE(b->read(i * (16 << 10), rb.data(), 16 << 10).is_ok());
    EXPECT_TRUE(block_matches(ra, 1, i));
    EXPECT_TRUE(block_matches(rb, 2, i));
  }
}

TEST(Isolation, ReleasedMemoryIsZeroedBeforeTheNextClient) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "8"}));
  {
    auto first = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
    std::vector<uint64_t> data(8192, 0xdeadbeefdeadbeefULL);
    for (uint64_t off = 0; off < (8 << 20); off += 65536) ASSERT_TRUE(first->write(off, data.data(), 65536).is_ok());
  }  // released
  auto second = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
  std::vector<uint64_t> data(8192);
  for (uint64_t off = 0; off < (8 << 20); off += 65536) {
    ASSERT_TRUE(second->read(off, data.data(), 65536).is_ok());
    for (uint64_t word : data) ASSERT_EQ(word, 0u) << "at " << off;
  }
}

// Connects a raw TCP socket to vmd.
UniqueFd raw_connect(uint16_t port) {
  std::string error;
  return net::tcp_connect(test_host(), port, net::deadline_after(2s), &error);
}

void send_bytes(int fd, const void* data, size_t length) {
  (void)net::send_all(fd, {static_cast<const uint8_t*>(data), length}, net::deadline_after(1s));
}

// Reads whatever vmd says until it closes (or 2 s).
std::string drain(int fd) {
  std::string all;
  char buffer[512];
  auto deadline = net::deadline_after(2s);
  while (true) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, net::remaining_ms(deadline)) <= 0) break;
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    all.append(buffer, static_cast<size_t>(n));
  }
  return all;
}

TEST(Robustness, GarbageAndTruncatedMessagesNeverHurtVmd) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  std::mt19937_64 rng(7);
  // A client that keeps a half-sent header open the whole time (slow loris).
  UniqueFd loris = raw_connect(vmd->port());
  ASSERT_TRUE(loris.valid());
  proto::FrameHeader partial{proto::kMagic, proto::kVersion, static_cast<uint16_t>(proto::MessageType::kAuth),
                             sizeof(proto::Auth), 0};
  send_bytes(loris.get(), &partial, 9);

  std::vector<std::function<void(int)>> attacks = {
      [&](int fd) {  // random garbage
        std::vector<uint8_t> junk(4096);
        for (auto& b : junk) b = static_cast<uint8_t>(rng());
        send_bytes(fd, junk.data(), junk.size());
      },
      [&](int fd) { send_bytes(fd, &partial, 8); },  // truncated header, then close
      [&](int fd) {                                  // huge length
        proto::FrameHeader h = partial;
        h.length = 0xffffffffu;
        send_bytes(fd, &h, sizeof h);
      },
      [&](int fd) {  // right header, truncated payload, then close
        send_bytes(fd, &partial, sizeof partial);
        uint8_t half[20] = {};
        send_bytes(fd, half, sizeof half);
      },
      [&](int fd) {  // a lease request before authenticating
        proto::LeaseRequest request{};
        request.size_bytes = 1 << 20;
        auto bytes = proto::encode(request);
        send_bytes(fd, bytes.data(), bytes.size());
      },
      [&](int fd) {  // wrong version
        proto::FrameHeader h = partial;
        h.version = 77;
        send_bytes(fd, &h, sizeof h);
      },
      [&](int fd) {  // authenticated, then nonsense requests
        proto::Auth auth{};
        auto bytes = proto::encode(auth);
        send_bytes(fd, bytes.data(), bytes.size());
        for (uint64_t size : {0ULL, 1ULL << 40}) {
          proto::LeaseRequest request{};
          request.size_bytes = size;
          request.provider = static_cast<uint16_t>(proto::ProviderId::kTcp);
          auto req = proto::encode(request);
          send_bytes(fd, req.data(), req.size());
        }
      },
      [&](int fd) {  // authenticated, bogus provider and unknown resume
        proto::Auth auth{};
        auto bytes = proto::encode(auth);
        send_bytes(fd, bytes.data(), bytes.size());
        proto::LeaseRequest request{};
        request.size_bytes = 1 << 20;
        request.provider = 77;
        auto req = proto::encode(request);
        send_bytes(fd, req.data(), req.size());
      },
      [&](int fd) {
        proto::Auth auth{};
        auto bytes = proto::encode(auth);
        send_bytes(fd, bytes.data(), bytes.size());
        proto::LeaseRequest request{};
        request.size_bytes = 1 << 20;
        request.provider = static_cast<uint16_t>(proto::ProviderId::kTcp);
        request.flags = proto::kLeaseResume;
        request.lease_id = 12345;
        auto req = proto::encode(request);
        send_bytes(fd, req.data(), req.size());
      },
      [&](int fd) {  // a release and a heartbeat for a lease it does not hold
        proto::Auth auth{};
        auto bytes = proto::encode(auth);
        send_bytes(fd, bytes.data(), bytes.size());
        auto beat = proto::encode(proto::Heartbeat{99, 1, 2, 3, 4});
        send_bytes(fd, beat.data(), beat.size());
        auto release = proto::encode(proto::Release{99});
        send_bytes(fd, release.data(), release.size());
      },
  };
  for (size_t i = 0; i < attacks.size(); ++i) {
    UniqueFd fd = raw_connect(vmd->port());
    ASSERT_TRUE(fd.valid());
    attacks[i](fd.get());
    if (i % 2 == 0) drain(fd.get());  // half of them wait for vmd's answer, half hang up at once
    ASSERT_TRUE(vmd->alive()) << "attack " << i << "\n" << vmd->log();
  }
  // The tcp data plane (always served): forged tickets, junk, hostile requests.
  {
    auto control = net::ControlClient::connect({test_host(), vmd->port(), "", 2s});
    auto grant = control->lease(1 << 20, net::Provider::kTcp, std::nullopt);
    auto data_connection = [&](bool forge) {
      UniqueFd fd = raw_connect(grant.data_port);
      proto::DataConnect hello{proto::kDataMagic, proto::kVersion, 0, grant.lease_id, {}};
      std::memcpy(hello.ticket, grant.ticket, sizeof hello.ticket);
      if (forge) hello.ticket[5] ^= 0x40;
      send_bytes(fd.get(), &hello, sizeof hello);
      proto::DataAccept accept{};
      EXPECT_TRUE(net::recv_all(fd.get(), {reinterpret_cast<uint8_t*>(&accept), sizeof accept}, net::deadline_after(2s)));
      EXPECT_EQ(accept.status, forge ? static_cast<uint32_t>(EACCES) : 0u);
      return fd;
    };
    data_connection(/*forge=*/true);
    { UniqueFd junk = raw_connect(grant.data_port); send_bytes(junk.get(), "\x01\x02\x03", 3); }
    const proto::DataRequest hostile[] = {
        {7, 4096, 0},                                                    // unknown operation
        {static_cast<uint32_t>(proto::DataOp::kRead), 0xffffffffu, 0},   // too long
        {static_cast<uint32_t>(proto::DataOp::kRead), 4096, 1 << 20},    // past the lease
        {static_cast<uint32_t>(proto::DataOp::kWrite), 4096, ~0ULL - 100},  // offset overflow
    };
    for (const auto& request : hostile) {
      UniqueFd fd = data_connection(false);
      send_bytes(fd.get(), &request, sizeof request);
      proto::DataReply reply{};
      ASSERT_TRUE(net::recv_all(fd.get(), {reinterpret_cast<uint8_t*>(&reply), sizeof reply}, net::deadline_after(2s)));
      EXPECT_NE(reply.status, 0u);
      EXPECT_EQ(drain(fd.get()), "");  // then vmd closes the connection
    }
    {  // a write cut off mid-payload
      UniqueFd fd = data_connection(false);
      proto::DataRequest write{static_cast<uint32_t>(proto::DataOp::kWrite), 65536, 0};
      send_bytes(fd.get(), &write, sizeof write);
      send_bytes(fd.get(), std::string(100, 'x').data(), 100);
    }
    // An shm lease asked over TCP is refused (the memory file travels only over the
    // local socket), and the connection stays usable.
    auto tcp_control = net::ControlClient::connect({test_host(), vmd->port(), "", 2s});
    try {
      tcp_control->lease(1 << 20, net::Provider::kShm, std::nullopt);
      ADD_FAILURE() << "an shm lease was granted over TCP";
    } catch (const net::ControlError& error) {
      EXPECT_EQ(error.code, EPROTONOSUPPORT) << error.what();
    }
    EXPECT_NO_THROW(tcp_control->lease(1 << 20, net::Provider::kTcp, std::nullopt));
  }
  if (test_provider() == net::Provider::kVerbs) {
    auto control = net::ControlClient::connect({test_host(), vmd->port(), "", 2s});
    auto grant = control->lease(1 << 20, test_provider(), std::nullopt);
    net::DomainOptions options;
    options.provider = test_provider();
    options.node = control->peer();
    options.service = std::to_string(vmd->port());
    auto domain = net::Domain::open(options);
    proto::DataConnect forged{proto::kDataMagic, proto::kVersion, 0, grant.lease_id, {}};
    EXPECT_THROW(net::Channel::connect(*domain, control->peer(), grant.data_port,
                                       {reinterpret_cast<const uint8_t*>(&forged), sizeof forged},
                                       net::deadline_after(2s * time_scale())),
                 std::runtime_error);
    uint8_t junk[3] = {1, 2, 3};
    EXPECT_THROW(net::Channel::connect(*domain, control->peer(), grant.data_port, junk, net::deadline_after(2s * time_scale())),
                 std::runtime_error);
  }
  // vmd survived everything and serves a real client while the slow loris still hangs.
  ASSERT_TRUE(vmd->alive());
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
  auto data = block_pattern(65536, 3, 0);
  ASSERT_TRUE(tier->write(0, data.data(), 65536).is_ok());
  std::vector<uint64_t> back(8192);
  ASSERT_TRUE(tier->read(0, back.data(), 65536).is_ok());
  EXPECT_TRUE(block_matches(back, 3, 0));
}

TEST(Failures, NetworkBlipResumesTheSameLease) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32", "--grace", "30"}));
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
  uint64_t lease = tier->lease_id();
  for (size_t i = 0; i < 32; ++i) {
    auto data = block_pattern(65536, 4, i);
    ASSERT_TRUE(tier->write(i * 65536, data.data(), 65536).is_ok());
  }
  tier->drop_data_path_for_testing();
  for (size_t i = 0; i < 32; ++i) {
    std::vector<uint64_t> back(8192);
    Status status = tier->read(i * 65536, back.data(), 65536);
    ASSERT_TRUE(status.is_ok()) << status.to_string();
    EXPECT_TRUE(block_matches(back, 4, i)) << i;
  }
  EXPECT_GE(tier->reconnects(), 1u);
  EXPECT_EQ(tier->lease_id(), lease);
  EXPECT_FALSE(tier->data_lost());
  EXPECT_EQ(tier->health(), tier::TierHealth::kHealthy);
}

// A connection that goes silent (vmd's idle timeout ends it; no close from the
// client) keeps the lease for the grace period, and the client resumes it.
TEST(Failures, ASilentConnectionKeepsItsLeaseForTheGracePeriod) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32", "--grace", "30", "--idle-timeout", "1"}));
  auto config = fast_config();
  config.heartbeat_interval = 2500ms * time_scale();  // slower than vmd's idle timeout
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 8), config);
  uint64_t lease = tier->lease_id();
  auto data = block_pattern(65536, 11, 0);
  ASSERT_TRUE(tier->write(0, data.data(), 65536).is_ok());
  auto deadline = std::chrono::steady_clock::now() + 20s * time_scale();
  while (tier->reconnects() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  ASSERT_GE(tier->reconnects(), 1u) << vmd->log();
  EXPECT_EQ(tier->lease_id(), lease);
  EXPECT_FALSE(tier->data_lost());
  std::vector<uint64_t> back(8192);
  ASSERT_TRUE(tier->read(0, back.data(), 65536).is_ok());
  EXPECT_TRUE(block_matches(back, 11, 0));
}

// A client whose connection closes (its process exited, was killed or exec'd) frees
// its lease at once: a donor sized to one lease serves the next client right away.
TEST(Failures, AClosedConnectionFreesItsLeaseAtOnce) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "8", "--grace", "300"}));
  for (int round = 0; round < 3; ++round) {
    auto control = net::ControlClient::connect({test_host(), vmd->port(), "", 2s * time_scale()});
    auto grant = control->lease(8 << 20, net::Provider::kTcp, std::nullopt);
    EXPECT_NE(grant.lease_id, 0u);
    control.reset();  // closes the connection without a Release, as a killed process does
    // The next client gets the whole donor (vmd frees the lease before it reads the
    // next client's request, which comes after the close).
    auto next = net::RemoteTier::connect(remote_spec(vmd->port(), 8), fast_config());
    EXPECT_NE(next->lease_id(), grant.lease_id);
  }
}

TEST(Failures, VmdRestartedUnderARunningClient) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  uint16_t port = vmd->port();
  auto tier = net::RemoteTier::connect(remote_spec(port, 8), fast_config());
  for (size_t i = 0; i < 16; ++i) {
    auto data = block_pattern(65536, 5, i);
    ASSERT_TRUE(tier->write(i * 65536, data.data(), 65536).is_ok());
  }
  vmd->kill_hard();
  std::string error;
  auto restarted = VmdProcess::start(vmd_args({"-m", "32"}), &error, port);
  ASSERT_TRUE(restarted) << error;
  // Old data is gone with the old process: reading it must fail, never return zeros.
  std::vector<uint64_t> back(8192, 1);
  auto start = std::chrono::steady_clock::now();
  if (test_provider() == net::Provider::kShm) {
    // The lease's memory file outlives vmd until the next heartbeat notices: until then
    // reads return its (right) bytes; then the lease counts as lost like on any path.
    while (!tier->data_lost() && std::chrono::steady_clock::now() - start < 15s * time_scale()) {
      Status early = tier->read(0, back.data(), 65536);
      if (early.is_ok()) {
        EXPECT_TRUE(block_matches(back, 5, 0));
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  Status status = tier->read(0, back.data(), 65536);
  EXPECT_FALSE(status.is_ok());
  EXPECT_EQ(status.code(), EIO) << status.to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s * time_scale());
  EXPECT_TRUE(tier->data_lost());
  EXPECT_EQ(tier->health(), tier::TierHealth::kDegraded);
  // The tier keeps working for new data.
  auto fresh = block_pattern(65536, 6, 3);
  ASSERT_TRUE(tier->write(3 * 65536, fresh.data(), 65536).is_ok());
  ASSERT_TRUE(tier->read(3 * 65536, back.data(), 65536).is_ok());
  EXPECT_TRUE(block_matches(back, 6, 3));
  EXPECT_FALSE(tier->read(4 * 65536, back.data(), 65536).is_ok());
}

TEST(Failures, ADonorThatStaysDownIsReportedLostWithoutHanging) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32"}));
  auto config = fast_config();
  config.reconnect_window = 1500ms * time_scale();
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 8), config);
  auto data = block_pattern(65536, 7, 0);
  ASSERT_TRUE(tier->write(0, data.data(), 65536).is_ok());
  vmd->kill_hard();
  auto start = std::chrono::steady_clock::now();
  std::vector<uint64_t> back(8192);
  Status status = tier->read(0, back.data(), 65536);
  if (test_provider() == net::Provider::kShm && status.is_ok()) {
    // The lease's memory file outlives vmd until the heartbeat notices: right bytes.
    EXPECT_TRUE(block_matches(back, 7, 0));
  } else {
    EXPECT_FALSE(status.is_ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 12s * time_scale());
  // Within the reconnect window (plus one connect timeout) the donor is declared lost.
  for (int i = 0; i < 100 * time_scale() && tier->health() != tier::TierHealth::kLost; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(tier->health(), tier::TierHealth::kLost);
  status = tier->write(0, data.data(), 65536);
  EXPECT_EQ(status.code(), EIO);
}

std::string http_get(uint16_t port) {
  UniqueFd fd;
  std::string error;
  fd = net::tcp_connect("127.0.0.1", port, net::deadline_after(2s), &error);
  if (!fd.valid()) return "connect failed: " + error;
  std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
  send_bytes(fd.get(), request.data(), request.size());
  return drain(fd.get());
}

TEST(Vmd, ServesPrometheusMetrics) {
  UniqueFd probe = net::tcp_listen("127.0.0.1", 0);
  uint16_t metrics_port = net::local_port(probe.get());
  probe.reset();
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "32", "--metrics", "127.0.0.1:" + std::to_string(metrics_port)}));
  auto config = fast_config();
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 8), config);
  auto data = block_pattern(65536, 8, 0);
  ASSERT_TRUE(tier->write(0, data.data(), 65536).is_ok());
  std::this_thread::sleep_for(600ms * time_scale());  // a heartbeat carries the counters
  std::string text = http_get(metrics_port);
  EXPECT_NE(text.find("200 OK"), std::string::npos) << text;
  EXPECT_NE(text.find("emp_vmd_leases_active 1"), std::string::npos) << text;
  EXPECT_NE(text.find("emp_vmd_clients 1"), std::string::npos) << text;
  EXPECT_NE(text.find("emp_vmd_bytes_written_total 65536"), std::string::npos) << text;
  EXPECT_NE(text.find("emp_vmd_pool_bytes 33554432"), std::string::npos) << text;
}

TEST(Vmd, ShutsDownCleanlyOnSigtermWithClientsConnected) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "16"}));
  auto config = fast_config();
  config.reconnect_window = 500ms * time_scale();
  auto tier = net::RemoteTier::connect(remote_spec(vmd->port(), 4), config);
  EXPECT_EQ(vmd->stop(), 0) << vmd->log();
}

TEST(Vmd, RefusesANonLoopbackBindWithoutAKey) {
  std::string error;
  auto vmd = VmdProcess::start({"-m", "16", "--bind", "0.0.0.0"}, &error);
  EXPECT_FALSE(vmd);
  EXPECT_NE(error.find("without an auth key"), std::string::npos) << error;
  // --insecure allows it (verbs needs a concrete address, so keep the test host there).
  auto args = test_provider() == net::Provider::kVerbs ? vmd_args({"-m", "16"})
                                                       : std::vector<std::string>{"-m", "16", "--bind", "0.0.0.0", "--insecure"};
  auto insecure = VmdProcess::start(args, &error);
  EXPECT_TRUE(insecure) << error;
}

TEST(Vmd, LimitsTheNumberOfClients) {
  START_VMD_OR_SKIP(vmd, vmd_args({"-m", "16", "-c", "1"}));
  auto first = net::RemoteTier::connect(remote_spec(vmd->port(), 4), fast_config());
  try {
    net::RemoteTier::connect(remote_spec(vmd->port(), 4), fast_config());
    FAIL() << "a second client was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("too many clients"), std::string::npos) << error.what();
  }
}

// Integrity through a real Engine: two donors and a file in one pool, heavy eviction.
TEST(Engine, EveryByteSurvivesEvictionToTwoDonorsAndAFile) {
  START_VMD_OR_SKIP(vmd1, vmd_args({"-m", "64"}));
  START_VMD_OR_SKIP(vmd2, vmd_args({"-m", "64"}));
  std::string file = temp_tier_path("pool");
  struct Unlink {
    std::string path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_file{file};
  std::vector<TierSpec> specs = {remote_spec(vmd1->port(), 48), remote_spec(vmd2->port(), 48)};
  TierSpec file_spec;
  file_spec.kind = TierSpec::Kind::kFile;
  file_spec.location = file;
  file_spec.size_bytes = 48 << 20;
  file_spec.element = file + ":48:0";
  specs.push_back(file_spec);

  core::EngineConfig config;
  config.options.block_size = 64 << 10;
  config.options.subblock_size = 16 << 10;
  config.options.fault_threads = 2;
  config.budget_bytes = 8 << 20;
  config.pool = tier::Pool::from_specs(specs, net::make_remote_factory(Options{}, fast_config()));
  tier::Pool* pool = config.pool.get();
  std::unique_ptr<core::Engine> engine;
  try {
    engine = core::Engine::create(std::move(config));
  } catch (const std::system_error& error) {
    int code = error.code().value();
    if (code == EPERM || code == ENOSYS || code == EACCES) GTEST_SKIP() << "userfaultfd unavailable: " << error.what();
    throw;
  }
  // Smaller under emulation (EMP_TEST_TIME_SCALE > 1, e.g. the soft-RoCE guest).
  const size_t bytes = time_scale() > 1 ? 24 << 20 : 64 << 20, page = 4096, words_per_page = page / 8;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  auto* words = static_cast<uint64_t*>(*memory);
  const size_t pages = bytes / page;
  std::vector<uint32_t> version(pages, 1);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (size_t p = t; p < pages; p += 2) fill_words(words, p * words_per_page, words_per_page, 1);
    });
  for (auto& thread : threads) thread.join();
  threads.clear();
  std::atomic<size_t> bad{SIZE_MAX};
  for (unsigned t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (size_t op = 0; op < pages; ++op) {
        size_t p = rng() % pages;
        if (p % 2 != t) continue;
        if (check_words(words, p * words_per_page, words_per_page, version[p]) != SIZE_MAX) bad = p;
        fill_words(words, p * words_per_page, words_per_page, ++version[p]);
      }
    });
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(bad.load(), SIZE_MAX) << "page " << bad.load() << " was corrupted";
  for (size_t p = 0; p < pages; ++p)
    ASSERT_EQ(check_words(words, p * words_per_page, words_per_page, version[p]), SIZE_MAX) << "page " << p;
  auto stats = engine->stats();
  EXPECT_GT(stats.faults_fetch, 0u);
  EXPECT_GT(stats.evictions_dirty, 0u);
  EXPECT_EQ(stats.io_errors, 0u);
  for (size_t i = 0; i < pool->tier_count(); ++i) {
    EXPECT_GT(pool->tier(i).counters().bytes_written, 0u) << pool->tier(i).describe();
    EXPECT_GT(pool->tier(i).counters().bytes_read, 0u) << pool->tier(i).describe();
  }
  ASSERT_TRUE(engine->release(*memory).is_ok());
}

}  // namespace
}  // namespace emp::testing
