// The -o json documents of every command, compared byte for byte (after the
// volatile values are normalized) with the documents recorded from cmkctl
// before it used nlohmann/json: field names, order and types stay.
//
// CMKFS_RECORD_JSON_DOCUMENTS=1 rewrites the recorded files instead (only
// for a deliberate change of the contract).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli_support.h"

namespace cmkfs::cli::testing {
namespace {

const std::filesystem::path kDocuments =
    std::filesystem::path(CMKFS_SOURCE_DIR) / "tests/cli/json_documents";

struct Step {
  std::string name;
  std::vector<std::string> args;
};

std::vector<Step> ReadSteps() {
  std::ifstream in(kDocuments / "commands.txt");
  std::vector<Step> steps;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    Step step;
    words >> step.name;
    for (std::string w; words >> w;) step.args.push_back(w);
    steps.push_back(std::move(step));
  }
  return steps;
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Ids, versions, times, the temp dir and the host file system's capacity
// differ from run to run; nothing else may (a number stays a number).
std::string Normalize(std::string text) {
  static const std::regex kTmp(R"((/[^"\s]*)?/cmkctl-test-[A-Za-z0-9]{6})");
  static const std::regex kTime(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)");
  static const std::regex kObjectId(
      "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  static const std::regex kVersion("[0-9a-f]{32}");
  static const std::regex kHostBytes(R"(("(capacity|free)_bytes": )\d+)");
  text = std::regex_replace(text, kHostBytes, "$1<BYTES>");
  text = std::regex_replace(text, kTmp, "<TMP>");
  text = std::regex_replace(text, kTime, "<TIME>");
  text = std::regex_replace(text, kObjectId, "<OBJECT_ID>");
  return std::regex_replace(text, kVersion, "<VERSION>");
}

// {STEP.FIELD}: the string value of "FIELD" in an earlier step's document.
std::string Substitute(std::string word,
                       const std::map<std::string, std::string>& outputs,
                       const std::string& tmp, const std::string& pem) {
  static const std::regex kRef(R"(\{([a-z0-9-]+)\.([a-z_]+)\})");
  std::smatch m;
  while (std::regex_search(word, m, kRef)) {
    std::string value;
    auto it = outputs.find(m[1].str());
    if (it != outputs.end()) {
      std::smatch field;
      const std::regex pattern("\"" + m[2].str() + "\": \"([^\"]*)\"");
      if (std::regex_search(it->second, field, pattern)) value = field[1];
    }
    EXPECT_FALSE(value.empty()) << "no " << m[0] << " for " << word;
    word.replace(static_cast<size_t>(m.position(0)),
                 static_cast<size_t>(m.length(0)), value);
  }
  for (auto [key, value] : {std::pair{"{TMP}", tmp}, {"{PEM}", pem}}) {
    if (auto at = word.find(key); at != std::string::npos)
      word.replace(at, std::string_view(key).size(), value);
  }
  return word;
}

// -o tsv as docs/cli.md states it: per record, the values in field order,
// strings raw, null empty, the rest (nested values too) as compact JSON.
std::string ExpectedTsv(const Json& doc) {
  auto field = [](const Json& v) -> std::string {
    if (v.is_null()) return "";
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
  };
  std::string out;
  for (const Json& record : doc.is_array() ? doc : Json::array({doc})) {
    std::string line;
    for (auto it = record.begin(); it != record.end(); ++it) {
      if (it != record.begin()) line += '\t';
      line += field(*it);
    }
    out += line + "\n";
  }
  return out;
}

bool ReadOnly(const Step& step) {
  const std::string& verb = step.args.size() > 1 ? step.args[1] : "";
  return verb == "show" || verb == "list" || step.name == "stats" ||
         step.name == "fsck" || step.name == "version";
}

class JsonDocumentsTest : public CmkctlTest {};

TEST_F(JsonDocumentsTest, EveryCommandPrintsTheRecordedDocument) {
  const bool record = std::getenv("CMKFS_RECORD_JSON_DOCUMENTS") != nullptr;
  const std::string pem = (tmp() / "key.pem").string();
  ASSERT_EQ(
      std::system(("openssl genrsa -out " + pem + " 2048 2>/dev/null").c_str()),
      0);
  const std::vector<Step> steps = ReadSteps();
  ASSERT_GT(steps.size(), 40u);
  std::map<std::string, std::string> outputs;
  for (const Step& step : steps) {
    std::vector<std::string> args;
    for (const auto& a : step.args)
      args.push_back(Substitute(a, outputs, tmp().string(), pem));
    RunResult r = Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << step.name << ": " << r.err;
    outputs[step.name] = r.out;
    const auto file = kDocuments / (step.name + ".json");
    if (record) {
      std::ofstream(file, std::ios::binary) << r.out;
      continue;
    }
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    EXPECT_EQ(Normalize(r.out), Normalize(ReadFile(file)))
        << "cmkctl " << step.name;
  }
  // -o tsv of every show and list still valid at the end (run after the
  // documents above, whose audit entries they would change).
  int checked = 0;
  for (const Step& step : steps) {
    if (!ReadOnly(step)) continue;
    // The host filesystem's free bytes change between two calls while
    // anything else on the host writes.
    if (step.name == "stats") continue;
    std::vector<std::string> args;
    for (const auto& a : step.args)
      args.push_back(Substitute(a, outputs, tmp().string(), pem));
    RunResult json = Ctl(args);
    if (json.exit_code != 0) continue;  // deleted since
    ASSERT_EQ(args.back(), "json");
    args.back() = "tsv";
    RunResult tsv = Ctl(args);
    EXPECT_EQ(tsv.exit_code, 0) << step.name << ": " << tsv.err;
    EXPECT_EQ(tsv.out, ExpectedTsv(ParseJsonOrFail(json))) << step.name;
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

}  // namespace
}  // namespace cmkfs::cli::testing
