// The control plane's JSON codec: round trips, escapes, malformed input.
#include <gtest/gtest.h>

#include "control/json.h"

namespace emp::control {
namespace {

TEST(Json, ParsesObjectsArraysAndScalars) {
  auto v = JsonValue::parse(R"( {"a":1,"b":[true,false,null],"c":"x\"y\n","d":-2.5,"e":18446744073709551615} )");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->u64("a"), 1u);
  ASSERT_TRUE(v->find("b")->is_array());
  EXPECT_EQ(v->find("b")->items().size(), 3u);
  EXPECT_EQ(v->str("c"), "x\"y\n");
  EXPECT_DOUBLE_EQ(v->number("d"), -2.5);
  EXPECT_EQ(v->u64("e"), UINT64_MAX);
  EXPECT_EQ(v->u64("missing", 7), 7u);
}

TEST(Json, QuoteRoundTrips) {
  std::string text = "file:/var/tmp/\"odd\\name\"\t\x01";
  auto v = JsonValue::parse("{\"k\":" + json_quote(text) + "}");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->str("k"), text);
}

TEST(Json, RejectsMalformedText) {
  for (const char* bad : {"", "{", "{\"a\"}", "{\"a\":}", "[1,]", "tru", "\"open", "{\"a\":1}x", "-", "{\"a\":\"\\q\"}"})
    EXPECT_FALSE(JsonValue::parse(bad)) << bad;
  EXPECT_FALSE(JsonValue::parse(std::string(1000, '[')));  // depth limit, no stack overflow
}

TEST(Json, KeepsMemberOrderAndQuotesInvalidUtf8AsValidJson) {
  auto v = JsonValue::parse(R"({"z":1,"a":2,"m":3})");
  ASSERT_TRUE(v);
  ASSERT_EQ(v->members().size(), 3u);
  EXPECT_EQ(v->members()[0].first, "z");
  EXPECT_EQ(v->members()[2].first, "m");
  auto quoted = JsonValue::parse("{\"k\":" + json_quote("bad \xff byte") + "}");
  ASSERT_TRUE(quoted);  // U+FFFD instead of the invalid byte
  EXPECT_EQ(quoted->str("k"), "bad \xef\xbf\xbd byte");
}

TEST(Json, NestingUpToThirtyTwoLevels) {
  EXPECT_TRUE(JsonValue::parse(std::string(32, '[') + std::string(32, ']')));
  EXPECT_FALSE(JsonValue::parse(std::string(34, '[') + std::string(34, ']')));
}

}  // namespace
}  // namespace emp::control
