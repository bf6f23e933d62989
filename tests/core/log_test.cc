// Log lines under systemd: with JOURNAL_STREAM naming the stderr stream, each
// line starts with its syslog priority so journald keeps the level.
#include "cmkfs/log.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace cmkfs {
namespace {

// Logs one line per level at "trace" and returns what reached stderr.
// JOURNAL_STREAM is set (to `journal_stream`, or to the captured stderr's
// device:inode when it is "self") before InitLogging looks at it.
std::string LogEveryLevel(const char* journal_stream) {
  testing::internal::CaptureStderr();
  if (journal_stream == nullptr) {
    ::unsetenv("JOURNAL_STREAM");
  } else if (std::string(journal_stream) == "self") {
    struct stat st {};
    EXPECT_EQ(::fstat(STDERR_FILENO, &st), 0);
    const std::string value =
        std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    ::setenv("JOURNAL_STREAM", value.c_str(), 1);
  } else {
    ::setenv("JOURNAL_STREAM", journal_stream, 1);
  }
  EXPECT_TRUE(InitLogging("trace", /*to_stderr=*/true).ok());
  spdlog::critical("c");
  spdlog::error("disk d1 sealed");
  spdlog::warn("w");
  spdlog::info("i");
  spdlog::debug("d");
  spdlog::trace("t");
  spdlog::default_logger()->flush();
  std::string out = testing::internal::GetCapturedStderr();
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_TRUE(InitLogging("info", true).ok());
  return out;
}

TEST(Logging, JournalStreamLinesCarrySyslogPriorities) {
  EXPECT_EQ(LogEveryLevel("self"),
            "<2>critical [cmkfs] c\n"
            "<3>error [cmkfs] disk d1 sealed\n"
            "<4>warning [cmkfs] w\n"
            "<6>info [cmkfs] i\n"
            "<7>debug [cmkfs] d\n"
            "<7>trace [cmkfs] t\n");
}

TEST(Logging, WithoutJournalStreamNoPriorityPrefix) {
  std::string out = LogEveryLevel(nullptr);
  EXPECT_EQ(out.find('<'), std::string::npos) << out;
  EXPECT_NE(out.find("Z error [cmkfs] disk d1 sealed\n"), std::string::npos)
      << out;
}

// A child of a unit whose stderr was redirected (e.g. `cmkctl ... 2>file` in
// an on_seal script) inherits JOURNAL_STREAM but does not write to the journal.
TEST(Logging, JournalStreamOfAnotherStreamOrMalformedIsIgnored) {
  for (const char* value : {"1:2", "garbage", "", "1:2:3"}) {
    std::string out = LogEveryLevel(value);
    EXPECT_EQ(out.find('<'), std::string::npos) << value << ": " << out;
    EXPECT_NE(out.find("Z error [cmkfs] disk d1 sealed\n"), std::string::npos)
        << value << ": " << out;
  }
}

}  // namespace
}  // namespace cmkfs
