// The daemon's metrics without a daemon: the I/O sink of a resource, the
// watcher observers and the build info, rendered as a scrape would.
#include "daemon_metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace cmkfs::metrics {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(DaemonMetrics, IoOfAResourceIsCountedPerOperation) {
  DaemonMetrics m;
  fuse::IoSink* sink = m.SinkFor(fs::ResourceKind::kDisk, "vm1");
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(m.SinkFor(fs::ResourceKind::kDisk, "vm1"), sink);
  EXPECT_NE(m.SinkFor(fs::ResourceKind::kSnapshot, "vm1"), sink);
  sink->Record(fuse::IoOp::kRead, 4096, milliseconds(2), true);
  sink->Record(fuse::IoOp::kRead, 512, milliseconds(1), true);
  sink->Record(fuse::IoOp::kWrite, 0, microseconds(30), false);
  sink->Record(fuse::IoOp::kFlush, 0, milliseconds(20), true);
  const std::string text = m.Render();
  const std::string id = "kind=\"disk\",name=\"vm1\"";
  for (const std::string& line : {
           "cmkfs_io_bytes_total{" + id + ",op=\"read\"} 4608",
           "cmkfs_io_bytes_total{" + id + ",op=\"write\"} 0",
           "cmkfs_io_operations_total{" + id + ",op=\"read\"} 2",
           "cmkfs_io_operations_total{" + id + ",op=\"write\"} 1",
           "cmkfs_io_operations_total{" + id + ",op=\"flush\"} 1",
           "cmkfs_io_errors_total{" + id + ",op=\"write\"} 1",
           "cmkfs_io_errors_total{" + id + ",op=\"read\"} 0",
           "cmkfs_io_latency_seconds_bucket{" + id +
               ",op=\"read\",le=\"0.001\"} 1",
           "cmkfs_io_latency_seconds_bucket{" + id +
               ",op=\"read\",le=\"0.0025\"} 2",
           "cmkfs_io_latency_seconds_count{" + id + ",op=\"flush\"} 1",
           std::string("cmkfs_io_operations_total{kind=\"snapshot\",name="
                       "\"vm1\",op=\"read\"} 0"),
       }) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n"
                                                         << text;
  }
  // Flushes move no bytes and discards are not timed: no such series.
  EXPECT_EQ(text.find("cmkfs_io_bytes_total{" + id + ",op=\"flush\"}"),
            std::string::npos);
  EXPECT_EQ(
      text.find("cmkfs_io_latency_seconds_count{" + id + ",op=\"discard\"}"),
      std::string::npos);
}

TEST(DaemonMetrics, WatcherObserversFeedThePollAndSealHistograms) {
  DaemonMetrics m;
  fs::WatcherOptions options;
  m.ObserveWatcher(&options);
  ASSERT_TRUE(options.poll_observer);
  ASSERT_TRUE(options.seal_observer);
  options.poll_observer(milliseconds(3), true);
  options.poll_observer(milliseconds(4), false);
  options.seal_observer(milliseconds(700));
  const std::string text = m.Render();
  EXPECT_NE(text.find("cmkfs_watcher_poll_duration_seconds_count 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("cmkfs_watcher_poll_failures_total 1\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("cmkfs_watcher_seal_latency_seconds_bucket{le=\"0.5\"} 0\n"),
      std::string::npos);
  EXPECT_NE(
      text.find("cmkfs_watcher_seal_latency_seconds_bucket{le=\"1\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(text.find("cmkfs_watcher_last_poll_timestamp_seconds 0\n"),
            std::string::npos);
}

TEST(DaemonMetrics, BuildInfoNamesTheVersionAndCommit) {
  DaemonMetrics m;
  const std::string text = m.Render();
  EXPECT_NE(
      text.find("cmkfs_build_info{version=\"" + std::string(BuildVersion()) +
                "\",git_commit=\"" + std::string(BuildGitCommit()) + "\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_FALSE(BuildVersion().empty());
  EXPECT_FALSE(BuildGitCommit().empty());
  // No engine attached: no resource families, no error either.
  EXPECT_EQ(text.find("cmkfs_resource_sealed"), std::string::npos);
  EXPECT_EQ(text.find("cmkfs_scrape_errors_total{"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::metrics
