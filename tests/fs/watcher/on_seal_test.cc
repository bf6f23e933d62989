// on_seal: the configured command runs once per sealed disk, with the disk's
// name as its own argument, without blocking the poll.
#include <sys/stat.h>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "watcher_fixture.h"

namespace cmkfs::fs::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class OnSealTest : public WatcherTest {
 protected:
  std::filesystem::path WriteScript(const std::string& body) {
    std::filesystem::path script = dir_ / "on-seal.sh";
    std::ofstream(script) << "#!/bin/sh\n" << body;
    chmod(script.c_str(), 0755);
    return script;
  }
};

TEST_F(OnSealTest, RunsWithTheDiskNameAsItsOnlyArgument) {
  const std::filesystem::path out = dir_ / "sealed.txt";
  WatcherOptions options;
  options.on_seal =
      WriteScript("echo \"$# $1 $CMKFS_DISK\" >> '" + out.string() + "'\n")
          .string();
  auto watcher = MakeWatcher(options);
  MakeDisk("vm-disk_1", DiskSku::kPremiumLrs);
  MakeDisk("data.2", DiskSku::kStandardSsdLrs);
  CMKFS_VALUE(engine_->CreateSnapshot("snap", "vm-disk_1"));
  Poll(*watcher);

  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher);
  EXPECT_EQ(watcher->WaitForOnSealCommands(seconds(10)), 0u);
  // One line per disk (snapshots have no VM to stop), in any order.
  std::string content = ReadFile(out);
  EXPECT_NE(content.find("1 vm-disk_1 vm-disk_1\n"), std::string::npos)
      << content;
  EXPECT_NE(content.find("1 data.2 data.2\n"), std::string::npos) << content;
  EXPECT_EQ(std::count(content.begin(), content.end(), '\n'), 2) << content;
  WatcherStats stats = watcher->stats();
  EXPECT_EQ(stats.on_seal_started, 2u);
  EXPECT_EQ(stats.on_seal_failed, 0u);

  // Not again while the disks stay sealed.
  Poll(*watcher);
  EXPECT_EQ(watcher->WaitForOnSealCommands(seconds(10)), 0u);
  EXPECT_EQ(watcher->stats().on_seal_started, 2u);
}

TEST_F(OnSealTest, InlineCommandGetsTheNameAppended) {
  const std::filesystem::path out = dir_ / "inline.txt";
  WatcherOptions options;
  options.on_seal = "printf 'stop %s\\n' >> '" + out.string() + "'";
  auto watcher = MakeWatcher(options);
  MakeDisk("d1", DiskSku::kPremiumLrs);
  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher);
  EXPECT_EQ(watcher->WaitForOnSealCommands(seconds(10)), 0u);
  EXPECT_EQ(ReadFile(out), "stop d1\n");
}

// The command runs until the test releases it (after the poll returned):
// a poll that waited for it would never return.
TEST_F(OnSealTest, SlowCommandDoesNotBlockThePoll) {
  const std::filesystem::path release = dir_ / "release";
  WatcherOptions options;
  options.on_seal =
      "while [ ! -e '" + release.string() + "' ]; do sleep 0.01; done; true";
  auto watcher = MakeWatcher(options);
  MakeDisk("d1", DiskSku::kPremiumLrs);
  CMKFS_ASSERT_OK(SetEnabled(false));
  auto polled = std::async(std::launch::async, [&] { return Poll(*watcher); });
  if (polled.wait_for(seconds(30)) != std::future_status::ready) {
    std::ofstream(release.string()) << "go\n";  // let the poll finish
    FAIL() << "the poll waited for the on_seal command";
  }
  EXPECT_EQ(polled.get().sealed, std::vector<std::string>{"disks/d1"});
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kSealed);
  EXPECT_EQ(watcher->stats().on_seal_running, 1u);
  std::ofstream(release.string()) << "go\n";
  EXPECT_EQ(watcher->WaitForOnSealCommands(seconds(30)), 0u);
  EXPECT_EQ(watcher->stats().on_seal_failed, 0u);
}

TEST_F(OnSealTest, FailingCommandIsCountedAndDiskStaysSealed) {
  WatcherOptions options;
  options.on_seal = "exit 3";
  auto watcher = MakeWatcher(options);
  MakeDisk("d1", DiskSku::kPremiumLrs);
  CMKFS_ASSERT_OK(SetEnabled(false));
  Poll(*watcher);
  EXPECT_EQ(watcher->WaitForOnSealCommands(seconds(10)), 0u);
  EXPECT_EQ(watcher->stats().on_seal_failed, 1u);
  EXPECT_EQ(StateOf(ResourceKind::kDisk, "d1"), ResourceState::kSealed);
}

}  // namespace
}  // namespace cmkfs::fs::testing
