#include "json.h"

#include <gtest/gtest.h>

namespace cmkfs::cli {
namespace {

TEST(JsonTest, EscapesStringsSoTheyParseBack) {
  std::string nasty = "quote\" backslash\\ newline\n tab\t ctl\x01 del\x7f é";
  Json j = Json::Object();
  j.Set("s", nasty);
  std::string text = j.Dump(-1);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_NE(text.find("\\u0001"), std::string::npos);
  auto back = Json::Parse(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ((*back)["s"].as_string(), nasty);
}

TEST(JsonTest, KeepsFieldOrderAndTypes) {
  Json j = Json::Object();
  j.Set("name", "d1");
  j.Set("size", uint64_t{1} << 40);
  j.Set("sealed", false);
  j.Set("des", Json());
  Json arr = Json::Array();
  arr.Push(1);
  arr.Push("two");
  j.Set("list", arr);
  EXPECT_EQ(j.Dump(-1),
            R"({"name":"d1","size":1099511627776,"sealed":false,"des":null,)"
            R"("list":[1,"two"]})");
  auto back = Json::Parse(j.Dump(2));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)["size"].as_int(), int64_t{1} << 40);
  EXPECT_TRUE((*back)["des"].is_null());
  EXPECT_TRUE((*back)["sealed"].is_bool());
  EXPECT_EQ((*back)["list"][1].as_string(), "two");
}

TEST(JsonTest, ParsesUnicodeEscapesAndSurrogatePairs) {
  auto j = Json::Parse(R"(["\u00e9\ud83d\ude00\/"])");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ((*j)[0].as_string(), "\xc3\xa9\xf0\x9f\x98\x80/");
}

TEST(JsonTest, RefusesMalformedDocuments) {
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", "-", "\"abc",
        "\"\\x\"", "\"\\ud800\"", "tru", "{} {}", "[\"\x01\"]", "nul"}) {
    EXPECT_FALSE(Json::Parse(bad).ok()) << bad;
  }
  std::string deep(1000, '[');
  EXPECT_FALSE(Json::Parse(deep).ok());
}

TEST(JsonTest, CellsForTables) {
  EXPECT_EQ(Json().ToCell(), "-");
  EXPECT_EQ(Json("").ToCell(), "-");
  Json arr = Json::Array();
  arr.Push("get");
  arr.Push("wrapKey");
  EXPECT_EQ(arr.ToCell(), "get,wrapKey");
  EXPECT_EQ(Json(true).ToCell(), "true");
}

}  // namespace
}  // namespace cmkfs::cli
