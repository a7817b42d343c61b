// Unit tests of the network layer's pure parts: wire-format checks, HMAC, the vmd
// command line and its extent allocator.
#include <gtest/gtest.h>

#include <random>

#include "net/auth.h"
#include "net/protocol.h"
#include "vmd/config.h"
#include "vmd/pool_memory.h"

namespace emp::net {
namespace {

namespace proto = protocol;

TEST(Protocol, EncodeDecodeRoundTrip) {
  proto::LeaseRequest request{};
  request.size_bytes = 64 << 20;
  request.provider = static_cast<uint16_t>(proto::ProviderId::kTcp);
  auto bytes = proto::encode(request, 7);
  ASSERT_EQ(bytes.size(), sizeof(proto::FrameHeader) + sizeof request);
  auto header = proto::peek_header(bytes);
  ASSERT_TRUE(header);
  EXPECT_EQ(proto::check_header(*header), proto::HeaderCheck::kOk);
  EXPECT_EQ(header->sequence, 7u);
  auto decoded = proto::decode<proto::LeaseRequest>(
      *header, std::span<const uint8_t>(bytes).subspan(sizeof(proto::FrameHeader)));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->size_bytes, request.size_bytes);
  // The same bytes are not a LeaseGrant.
  EXPECT_FALSE(proto::decode<proto::LeaseGrant>(*header, std::span<const uint8_t>(bytes).subspan(16)));
}

TEST(Protocol, RejectsMalformedHeaders) {
  proto::FrameHeader header{proto::kMagic, proto::kVersion, static_cast<uint16_t>(proto::MessageType::kAuth),
                            sizeof(proto::Auth), 0};
  EXPECT_EQ(proto::check_header(header), proto::HeaderCheck::kOk);
  auto bad = header;
  bad.magic = 0x12345678;
  EXPECT_EQ(proto::check_header(bad), proto::HeaderCheck::kBadMagic);
  bad = header;
  bad.version = 99;
  EXPECT_EQ(proto::check_header(bad), proto::HeaderCheck::kBadVersion);
  bad = header;
  bad.type = 999;
  EXPECT_EQ(proto::check_header(bad), proto::HeaderCheck::kBadType);
  bad = header;
  bad.length = 0xffffffff;
  EXPECT_EQ(proto::check_header(bad), proto::HeaderCheck::kBadLength);
  bad.length = sizeof(proto::Auth) - 1;
  EXPECT_EQ(proto::check_header(bad), proto::HeaderCheck::kBadLength);
  uint8_t short_bytes[10] = {};
  EXPECT_FALSE(proto::peek_header(short_bytes));
}

TEST(Protocol, RandomBytesNeverPassAsValidFramesExceptByChance) {
  std::mt19937_64 rng(1);
  int ok = 0;
  for (int i = 0; i < 100000; ++i) {
    uint8_t bytes[16];
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    if (auto header = proto::peek_header(bytes); header && proto::check_header(*header) == proto::HeaderCheck::kOk) ++ok;
  }
  EXPECT_EQ(ok, 0);
}

TEST(Protocol, ErrorTextIsBounded) {
  std::string huge(5000, 'x');
  auto error = proto::make_error(EINVAL, huge);
  EXPECT_EQ(proto::error_text(error).size(), proto::kMaxErrorText);
  error.text_length = 60000;  // hostile length field
  EXPECT_EQ(proto::error_text(error).size(), proto::kMaxErrorText);
}

TEST(Auth, HmacSha256MatchesRfc4231) {
  // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
  std::string data = "what do ya want for nothing?";
  Mac mac = auth_mac("Jefe", "", {reinterpret_cast<const uint8_t*>(data.data()), data.size()}, {});
  const uint8_t expected[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
  EXPECT_TRUE(constant_time_equal(mac, expected));
}

TEST(Auth, ClientAndServerProofsDiffer) {
  uint8_t a[32] = {1}, b[32] = {2};
  EXPECT_FALSE(constant_time_equal(auth_mac("k", kClientLabel, a, b), auth_mac("k", kServerLabel, b, a)));
  EXPECT_FALSE(constant_time_equal(auth_mac("k", kClientLabel, a, b), auth_mac("K", kClientLabel, a, b)));
  EXPECT_TRUE(constant_time_equal(auth_mac("k", kClientLabel, a, b), auth_mac("k", kClientLabel, a, b)));
}

TEST(VmdConfig, ParsesTheReferenceCommandLine) {
  auto config = vmd::parse_vmd_args({"-m", "4096", "-p", "19675", "-d", "mlx5_0", "-c", "8", "-v"});
  EXPECT_EQ(config.pool_bytes, 4096ULL << 20);
  EXPECT_EQ(config.port, 19675);
  EXPECT_EQ(config.device, "mlx5_0");
  EXPECT_EQ(config.max_clients, 8u);
  EXPECT_EQ(config.verbosity, 1);
  config = vmd::parse_vmd_args({"-m", "16", "--metrics", "127.0.0.1:9100", "--bind", "::1", "--grace", "5"});
  EXPECT_EQ(config.metrics_port, 9100);
  EXPECT_EQ(config.metrics_address, "127.0.0.1");
  EXPECT_EQ(config.grace.count(), 5);
  config = vmd::parse_vmd_args({"-p", "0", "-m", "16", "-vv", "-p", "4242", "--no-shm"});  // a later value wins
  EXPECT_EQ(config.port, 4242);
  EXPECT_EQ(config.verbosity, 2);
  EXPECT_FALSE(config.enable_shm);
}

TEST(VmdConfig, RejectsBadArguments) {
  EXPECT_THROW(vmd::parse_vmd_args({}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m", "abc"}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m", "0"}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m", "16", "-p", "70000"}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m", "16", "--frobnicate"}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m", "16", "--metrics", "nocolon"}), vmd::UsageError);
  EXPECT_THROW(vmd::parse_vmd_args({"-m"}), vmd::UsageError);
  EXPECT_TRUE(vmd::parse_vmd_args({"--help"}).help);
}

TEST(ExtentAllocator, FirstFitWithCoalescing) {
  vmd::ExtentAllocator allocator(8 * vmd::kLeaseGranule);
  auto a = allocator.allocate(3 * vmd::kLeaseGranule);
  auto b = allocator.allocate(1);  // rounds up to a granule
  auto c = allocator.allocate(4 * vmd::kLeaseGranule);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(allocator.free_bytes(), 0u);
  EXPECT_FALSE(allocator.allocate(1));
  allocator.release(*a, 3 * vmd::kLeaseGranule);
  allocator.release(*b, 1);
  EXPECT_EQ(allocator.free_bytes(), 4 * vmd::kLeaseGranule);
  auto d = allocator.allocate(4 * vmd::kLeaseGranule);  // needs a and b coalesced
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 0u);
}

}  // namespace
}  // namespace emp::net
