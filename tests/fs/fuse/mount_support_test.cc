// MountTest's teardown check fails the test on what a detached daemon hides:
// an exit other than 0 and a sanitizer report file. (The shell harnesses'
// counterpart is harness.daemon_reports.)
#include "mount_support.h"

#include <gtest/gtest-spi.h>
#include <signal.h>

#include <fstream>
#include <string>

namespace cmkfs::testing {
namespace {
using namespace std::chrono_literals;

class MountSupportTest : public MountTest {};

TEST_F(MountSupportTest, DaemonKilledBehindTheTestsBackFails) {
  MustStartDaemon();
  const pid_t pid = daemon_pid_;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitDaemonGone(10s));
  RunProgram({"/usr/bin/fusermount3", "-u", "-z", mnt_.string()}, 10s);
  EXPECT_NONFATAL_FAILURE(
      CheckDaemonsAndReports(),
      "(pid " + std::to_string(pid) + ") ended with signal 9");
}

TEST_F(MountSupportTest, CleanStopPassesAndDaemonSeesTheReportPath) {
  MustStartDaemon();
  const std::string environ_path =
      "/proc/" + std::to_string(daemon_pid_) + "/environ";
  std::ifstream in(environ_path);
  std::string env((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(env.find("ASAN_OPTIONS="), std::string::npos);
  EXPECT_NE(env.find("log_path=" + (root_ / "reports" / "asan").string()),
            std::string::npos);
  ASSERT_TRUE(StopDaemon());
  CheckDaemonsAndReports();  // no failure: exit 0, no report
}

TEST_F(MountSupportTest, ReportFileFromAChildFails) {
  // A child that honours log_path the way a sanitizer does.
  RunResult r = RunProgram(
      {"/bin/sh", "-c",
       "p=${ASAN_OPTIONS##*log_path=}; echo 'ERROR: planted report' > "
       "\"$p.4242\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NONFATAL_FAILURE(CheckDaemonsAndReports(), "planted report");
  std::filesystem::remove(root_ / "reports" / "asan.4242");
}

}  // namespace
}  // namespace cmkfs::testing
