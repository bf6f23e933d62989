// The boundary to nlohmann/json: bounded, exception-free parsing with
// one-line errors, and dumping that always gives valid JSON.
#include "json_io.h"

#include <gtest/gtest.h>

namespace cmkfs::cli {
namespace {

TEST(JsonIoTest, EscapesStringsSoTheyParseBack) {
  const std::string nasty = "quote\" backslash\\ newline\n tab\t ctl\x01 é";
  Json j = Json::object();
  j["s"] = nasty;
  const std::string text = DumpJson(j, -1);
  EXPECT_EQ(text, R"({"s":"quote\" backslash\\ newline\n tab\t ctl\u0001 é"})");
  auto back = ParseJson(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ((*back)["s"].get<std::string>(), nasty);
}

TEST(JsonIoTest, KeepsFieldOrderAndTypes) {
  Json j = Json::object();
  j["name"] = "d1";
  j["size"] = uint64_t{1} << 40;
  j["sealed"] = false;
  j["des"] = nullptr;
  j["list"] = Json::array({1, "two"});
  j["empty"] = Json::array();
  j["name"] = "d2";  // replaced in place
  EXPECT_EQ(DumpJson(j, -1),
            R"({"name":"d2","size":1099511627776,"sealed":false,"des":null,)"
            R"("list":[1,"two"],"empty":[]})");
  EXPECT_EQ(DumpJson(j, 2).substr(0, 20), "{\n  \"name\": \"d2\",\n  ");
}

TEST(JsonIoTest, InvalidUtf8IsReplacedSoTheOutputStaysJson) {
  Json j = {{"s", std::string("ok\xff\xfe")}};
  const std::string text = DumpJson(j, -1);
  EXPECT_EQ(text, "{\"s\":\"ok\xEF\xBF\xBD\xEF\xBF\xBD\"}");
  EXPECT_TRUE(ParseJson(text).ok());
}

TEST(JsonIoTest, MalformedDocumentsGiveOneLineErrors) {
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\" 1}", "tru", "01", "\"\\x\"", "[1] [2]",
        "{\"a\":1,}", "\"a\nb\"", "// comment\n1", "\"\\ud800\""}) {
    auto r = ParseJson(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
    const std::string m = r.status().message();
    EXPECT_TRUE(m.starts_with("invalid JSON: ")) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.find("json.exception"), std::string::npos) << m;
  }
  EXPECT_EQ(ParseJson("[1,]").status().message(),
            "invalid JSON: parse error at line 1, column 4: syntax error while "
            "parsing value - unexpected ']'; expected '[', '{', or a literal");
}

TEST(JsonIoTest, DepthAndSizeAreBounded) {
  JsonLimits limits;
  limits.max_depth = 4;
  EXPECT_TRUE(ParseJson("[[[[1]]]]", limits).ok());
  EXPECT_TRUE(ParseJson(R"({"a":{"b":[{"c":1}]}})", limits).ok());
  auto deep = ParseJson("[[[[[1]]]]]", limits);
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(),
            "invalid JSON: nested deeper than 4 levels");
  // The default bound: a million brackets are refused, not recursed into.
  const std::string bomb(JsonLimits{}.max_bytes, '[');
  auto r = ParseJson(bomb);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "invalid JSON: nested deeper than 64 levels");
  limits.max_bytes = 8;
  auto big = ParseJson("\"123456789\"", limits);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(
      big.status().message(),
      "invalid JSON: the document has 11 bytes, more than the limit of 8");
}

}  // namespace
}  // namespace cmkfs::cli
