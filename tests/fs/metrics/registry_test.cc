// The registry and the text exposition format: escaping, value formats,
// histogram buckets, concurrent updates, and a render that the real
// `promtool check metrics` accepts.
#include "registry.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdio>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace cmkfs::metrics {
namespace {

// Runs `promtool check metrics` on `text`; returns its exit status and
// output (stdout and stderr).
std::pair<int, std::string> Promtool(const std::string& text) {
  char path[] = "/tmp/cmkfs-metrics-test-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  std::remove(path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(Exposition, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabelValue("plain-name_1.x"), "plain-name_1.x");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  EXPECT_EQ(EscapeLabelValue("tab\tkept"), "tab\tkept");
  EXPECT_EQ(EscapeLabelValue("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 kept
}

TEST(Exposition, LabelValuesReplaceBadUtf8AndControlCharacters) {
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(EscapeLabelValue("a\xff"
                             "b"),
            "a" + fffd + "b");
  EXPECT_EQ(EscapeLabelValue("\xc0\xaf"), fffd + fffd);  // overlong '/'
  EXPECT_EQ(EscapeLabelValue("\xed\xa0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(EscapeLabelValue("cut\xe2\x82"), "cut" + fffd + fffd);
  EXPECT_EQ(EscapeLabelValue(std::string("nul\0x", 5)), "nul" + fffd + "x");
  EXPECT_EQ(EscapeLabelValue("bell\a\r"), "bell" + fffd + fffd);
}

TEST(Exposition, HelpEscapesBackslashAndNewlineOnly) {
  EXPECT_EQ(EscapeHelp("a \"quoted\" \\ path\nnext"),
            "a \"quoted\" \\\\ path\\nnext");
}

TEST(Exposition, ValuesAreExactOrShortestRoundTrip) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(1.5), "1.5");
  EXPECT_EQ(FormatValue(0.00005), "5e-05");
  EXPECT_EQ(FormatValue(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(Exposition, NamesFollowTheFormat) {
  EXPECT_TRUE(ValidMetricName("cmkfs_io_bytes_total"));
  EXPECT_TRUE(ValidMetricName("ns:rule_name"));
  EXPECT_FALSE(ValidMetricName(""));
  EXPECT_FALSE(ValidMetricName("9lives"));
  EXPECT_FALSE(ValidMetricName("has-dash"));
  EXPECT_TRUE(ValidLabelName("kind"));
  EXPECT_FALSE(ValidLabelName("__reserved"));
  EXPECT_FALSE(ValidLabelName("a:b"));
  EXPECT_FALSE(ValidLabelName("0x"));
}

TEST(Histogram, BucketsAreCumulativeWithUpperBoundsInclusive) {
  Histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 1.0, 5.0, 50.0}) h.Observe(v);
  Histogram::Snapshot s = h.snapshot();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 2u);  // 0.05, 0.1 (le is inclusive)
  EXPECT_EQ(s.cumulative[1], 4u);  // + 0.5, 1.0
  EXPECT_EQ(s.cumulative[2], 5u);  // + 5.0
  EXPECT_EQ(s.cumulative[3], 6u);  // + 50.0 in +Inf
  EXPECT_EQ(s.count(), 6u);
  EXPECT_DOUBLE_EQ(s.sum, 56.65);
}

TEST(Histogram, RendersBucketSumAndCountLines) {
  Histogram h({0.5, 2});
  h.Observe(0.25);
  h.Observe(3);
  TextWriter w;
  w.BeginFamily("x_seconds", "X.", "histogram");
  w.HistogramSamples("x_seconds", {{"op", "read"}}, h.snapshot());
  EXPECT_EQ(w.text(),
            "# HELP x_seconds X.\n"
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{op=\"read\",le=\"0.5\"} 1\n"
            "x_seconds_bucket{op=\"read\",le=\"2\"} 1\n"
            "x_seconds_bucket{op=\"read\",le=\"+Inf\"} 2\n"
            "x_seconds_sum{op=\"read\"} 3.25\n"
            "x_seconds_count{op=\"read\"} 2\n");
}

TEST(Registry, RendersFamiliesInOrderWithChildrenSortedByLabels) {
  Registry r;
  auto& bytes = r.AddCounterFamily("t_bytes_total", "Bytes.", {"name", "op"});
  Gauge& g = r.AddGauge("t_open", "Open.");
  bytes.With({"vm2", "read"}).Inc(5);
  bytes.With({"vm1", "write"}).Inc(7);
  bytes.With({"vm1", "write"}).Inc();
  g.Set(3);
  r.AddCollector([](TextWriter& w) {
    w.BeginFamily("t_info", "Info.", "gauge");
    w.Sample("t_info", {{"version", "1.0"}}, uint64_t{1});
  });
  EXPECT_EQ(r.Render(),
            "# HELP t_bytes_total Bytes.\n"
            "# TYPE t_bytes_total counter\n"
            "t_bytes_total{name=\"vm1\",op=\"write\"} 8\n"
            "t_bytes_total{name=\"vm2\",op=\"read\"} 5\n"
            "# HELP t_open Open.\n"
            "# TYPE t_open gauge\n"
            "t_open 3\n"
            "# HELP t_info Info.\n"
            "# TYPE t_info gauge\n"
            "t_info{version=\"1.0\"} 1\n");
}

TEST(Registry, ConcurrentUpdatesAreAllCountedWhileScraping) {
  Registry r;
  auto& ops = r.AddCounterFamily("c_ops_total", "Ops.", {"name"});
  Histogram& h = r.AddHistogram("c_seconds", "Latency.", {0.001, 0.01});
  Gauge& g = r.AddGauge("c_level", "Level.");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      std::string text = r.Render();
      ASSERT_NE(text.find("# TYPE c_ops_total counter"), std::string::npos);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = ops.With({"disk" + std::to_string(t % 2)});
      for (int i = 0; i < kPerThread; ++i) {
        mine.Inc();
        h.Observe(i % 2 == 0 ? 0.0005 : 0.005);
        g.Add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();
  EXPECT_EQ(ops.With({"disk0"}).value(), uint64_t{kThreads / 2 * kPerThread});
  EXPECT_EQ(ops.With({"disk1"}).value(), uint64_t{kThreads / 2 * kPerThread});
  Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(s.cumulative[0], uint64_t{kThreads * kPerThread / 2});
  EXPECT_NEAR(s.sum, kThreads * kPerThread / 2 * 0.0055, 1e-6);
  EXPECT_EQ(g.value(), double{kThreads * kPerThread});
}

TEST(Registry, RenderWithHostileLabelsPassesPromtool) {
  Registry r;
  auto& sealed = r.AddGaugeFamily("p_sealed", "Sealed \\ state\nof a disk.",
                                  {"name", "reason"});
  sealed.With({"vm\"1\"", "key cmk://v/keys/k unusable: \"disabled\"\nnow"})
      .Set(1);
  sealed.With({"back\\slash\xff", ""}).Set(0);
  auto& lat = r.AddHistogramFamily("p_latency_seconds", "Latency.", {"op"},
                                   LatencyBuckets());
  lat.With({"read"}).Observe(0.003);
  r.AddCounter("p_requests_total", "Requests.").Inc(3);
  const std::string text = r.Render();
  auto [status, out] = Promtool(text);
  EXPECT_EQ(status, 0) << out << "\n" << text;
  EXPECT_NE(text.find("p_sealed{name=\"vm\\\"1\\\"\",reason=\"key "
                      "cmk://v/keys/k unusable: \\\"disabled\\\"\\nnow\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# HELP p_sealed Sealed \\\\ state\\nof a disk."),
            std::string::npos)
      << text;
}

TEST(Registry, PromtoolRejectsWhatTheWriterNeverProduces) {
  // The check above can fail: promtool does refuse an unescaped quote.
  auto [status, out] = Promtool("# TYPE bad gauge\nbad{name=\"a\"b\"} 1\n");
  EXPECT_NE(status, 0) << out;
}

}  // namespace
}  // namespace cmkfs::metrics
