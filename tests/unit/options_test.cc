// Option table, memory path and size parsing: valid input parses, bad input names
// the element or variable.
#include <gtest/gtest.h>

#include "common/mem_path.h"
#include "common/options.h"
#include "common/size_parse.h"

namespace emp {
namespace {

TEST(SizeParse, AcceptsSuffixesAndRejectsGarbage) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("2M"), 2u << 20);
  EXPECT_EQ(parse_size("2MiB"), 2u << 20);
  EXPECT_EQ(parse_size("1G"), 1ull << 30);
  EXPECT_EQ(parse_size("16", 1 << 20), 16u << 20);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("K"));
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("-4K"));
  EXPECT_FALSE(parse_size("4KX"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("18446744073709551615K"));
}

TEST(Options, ValidBlockAndSubblockSizes) {
  const char* env[] = {"EMP_BLOCK_SIZE=2M", "EMP_SUBBLOCK_SIZE=128K", "EMP_CSF=0", "PATH=/bin", nullptr};
  Options o = options_from_environment(env, nullptr);
  EXPECT_EQ(o.block_size, 2u << 20);
  EXPECT_EQ(o.subblock_size, 128u << 10);
  EXPECT_FALSE(o.csf);
}

TEST(Options, RejectsBadValuesNamingTheVariable) {
  struct Case {
    const char* entry;
    const char* expect;
  } cases[] = {
      {"EMP_BLOCK_SIZE=3K", "EMP_BLOCK_SIZE"},     {"EMP_BLOCK_SIZE=4M", "EMP_BLOCK_SIZE"},
      {"EMP_BLOCK_SIZE=2K", "EMP_BLOCK_SIZE"},     {"EMP_SUBBLOCK_SIZE=256K", "EMP_SUBBLOCK_SIZE"},
      {"EMP_SUBBLOCK_SIZE=1K", "EMP_SUBBLOCK_SIZE"}, {"EMP_CSF=maybe", "EMP_CSF"},
      {"EMP_REPLICAS=4", "EMP_REPLICAS"},          {"EMP_LOG_LEVEL=loud", "EMP_LOG_LEVEL"},
      {"EMP_FAULT_THREADS=0", "EMP_FAULT_THREADS"}, {"EMP_MEM_PATH=dram:0", "dram:0"},
      {"EMP_TRANSPORT=udp", "EMP_TRANSPORT"},
  };
  for (const auto& c : cases) {
    const char* env[] = {c.entry, nullptr};
    try {
      options_from_environment(env, nullptr);
      ADD_FAILURE() << c.entry << " was accepted";
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find(c.expect), std::string::npos) << error.what();
    }
  }
}

TEST(Options, SubblockLargerThanBlockIsRejected) {
  const char* env[] = {"EMP_BLOCK_SIZE=8K", "EMP_SUBBLOCK_SIZE=16K", nullptr};
  EXPECT_THROW(options_from_environment(env, nullptr), OptionError);
}

TEST(Options, UnknownVariableWarnsWithClosestName) {
  const char* env[] = {"EMP_BLOK_SIZE=4K", nullptr};
  std::vector<std::string> warnings;
  options_from_environment(env, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("EMP_BLOCK_SIZE"), std::string::npos) << warnings[0];
}

TEST(Options, MemPathWinsOverAlias) {
  const char* env[] = {"EMP_PMEM_PATH=dram:1|/tmp/a:1:0", "EMP_MEM_PATH=dram:2|/tmp/b:1:0", nullptr};
  Options o = options_from_environment(env, nullptr);
  ASSERT_TRUE(o.mem_path);
  EXPECT_EQ(*o.mem_path->dram_bytes, 2u << 20);
  const char* alias_only[] = {"EMP_PMEM_PATH=dram:3|/tmp/a:1:0", nullptr};
  EXPECT_EQ(*options_from_environment(alias_only, nullptr).mem_path->dram_bytes, 3u << 20);
}

TEST(MemPath, ParsesTheReferenceExample) {
  MemPath p = parse_mem_path("\"10.10.0.112:131072:19675|/dev/nvme1n1:131072:0|dram:32768\"");
  ASSERT_EQ(p.tiers.size(), 2u);
  EXPECT_EQ(p.tiers[0].kind, TierSpec::Kind::kRemote);
  EXPECT_EQ(p.tiers[0].location, "10.10.0.112");
  EXPECT_EQ(p.tiers[0].size_bytes, 131072ull << 20);
  EXPECT_EQ(p.tiers[0].port, 19675);
  EXPECT_EQ(p.tiers[1].kind, TierSpec::Kind::kDevice);
  EXPECT_EQ(p.tiers[1].location, "/dev/nvme1n1");
  EXPECT_EQ(*p.dram_bytes, 32768ull << 20);
  EXPECT_EQ(p.pool_bytes(), 2 * (131072ull << 20));
}

TEST(MemPath, ParsesEveryElementKind) {
  MemPath p = parse_mem_path("dram:16384|[::1]:512:0|node-7.example:1G:19676|/var/tmp/x.tier:64:8|dram:auto");
  EXPECT_TRUE(p.dram_auto);
  EXPECT_FALSE(p.dram_bytes);
  ASSERT_EQ(p.tiers.size(), 3u);
  EXPECT_EQ(p.tiers[0].location, "::1");
  EXPECT_EQ(p.tiers[0].port, kDefaultVmdPort);
  EXPECT_EQ(p.tiers[1].size_bytes, 1ull << 30);
  EXPECT_EQ(p.tiers[1].port, 19676);
  EXPECT_EQ(p.tiers[2].kind, TierSpec::Kind::kFile);
  EXPECT_EQ(p.tiers[2].offset_bytes, 8ull << 20);
  EXPECT_TRUE(parse_mem_path("dram:-1").dram_auto);
  EXPECT_EQ(*parse_mem_path("dram:auto|dram:64").dram_bytes, 64ull << 20);  // last one wins
}

TEST(MemPath, ErrorsNameTheElement) {
  const char* bad[] = {"",           "dram:0",          "dram:abc",         "host:0:19675",   "host:12:99999",
                       "host:12",    "/tmp/f:12",       "/tmp/f:0:0",       "/tmp/f:1:x",     "ramdisk",
                       "a|",         "[::1:12:1",       "bad host!:1:1",    "dram:1|/tmp/f:1:0:0"};
  for (const char* text : bad) {
    try {
      parse_mem_path(text);
      ADD_FAILURE() << "'" << text << "' was accepted";
    } catch (const MemPathError& error) {
      EXPECT_NE(std::string(error.what()).find("memory path"), std::string::npos) << error.what();
    }
  }
  try {
    parse_mem_path("dram:64|10.0.0.1:0:19675");
  } catch (const MemPathError& error) {
    EXPECT_NE(std::string(error.what()).find("10.0.0.1:0:19675"), std::string::npos) << error.what();
  }
}

TEST(MemPath, TierListRejectsDram) {
  EXPECT_THROW(parse_tier_list("dram:64|/tmp/x:1:0"), MemPathError);
  EXPECT_EQ(parse_tier_list("/tmp/x:1:0|/tmp/y:2:0").size(), 2u);
}

}  // namespace
}  // namespace emp
