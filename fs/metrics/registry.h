// A small Prometheus metrics registry and the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Counters,
// gauges and histograms are lock-free atomics, safe to update from any thread
// at any rate (the FUSE I/O path); a family's children are created under a
// mutex on first use (at open, never per I/O) and live as long as the
// registry, so a reference to one stays valid. The text is rendered on
// scrape. No cmkfs dependency.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cmkfs::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) noexcept {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept {
    value_.fetch_add(d, std::memory_order_relaxed);
  }
  double value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<double> value_{0};
};

// Cumulative buckets with fixed upper bounds (ascending, finite; +Inf is
// implied). Observe is lock-free; a snapshot's count is the +Inf bucket, so
// count and buckets always agree (the sum may lag by in-flight observations).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value) noexcept;

  struct Snapshot {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count() const { return cumulative.back(); }
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, +Inf last
  std::atomic<double> sum_{0};
};

// Latency buckets in seconds, 50 us to 10 s (I/O, unwrap, watcher polls).
std::vector<double> LatencyBuckets();

using Labels = std::vector<std::pair<std::string, std::string>>;

// Metric and label names of the exposition format: [a-zA-Z_:][a-zA-Z0-9_:]*
// and [a-zA-Z_][a-zA-Z0-9_]* (names starting with "__" are reserved).
bool ValidMetricName(std::string_view name);
bool ValidLabelName(std::string_view name);
// A label value inside its double quotes: backslash, double quote and line
// feed escaped; bytes that are not UTF-8 become U+FFFD, other control
// characters U+FFFD too, so any input yields one valid line.
std::string EscapeLabelValue(std::string_view value);
// HELP text: backslash and line feed escaped.
std::string EscapeHelp(std::string_view help);
// A sample value: integers exactly, others shortest round-trip, "+Inf",
// "-Inf", "NaN".
std::string FormatValue(double value);

// Builds one exposition document. Each family is started once with
// BeginFamily and its samples follow it; names and labels are the caller's
// (checked with the functions above, which abort on a programming error).
// Not thread-safe (one per scrape).
class TextWriter {
 public:
  // type: "counter", "gauge", "histogram", "untyped".
  void BeginFamily(std::string_view name, std::string_view help,
                   std::string_view type);
  void Sample(std::string_view name, const Labels& labels, double value);
  void Sample(std::string_view name, const Labels& labels, uint64_t value);
  // NAME_bucket{...,le="..."} for each bound and +Inf, NAME_sum, NAME_count.
  void HistogramSamples(std::string_view name, const Labels& labels,
                        const Histogram::Snapshot& h);
  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void SampleLine(std::string_view name, const Labels& labels,
                  const std::string& value);
  std::string out_;
};

// Children of one labelled metric, keyed by their label values (in the
// order of the family's label names). With locks; Write copies the
// children's pointers under the lock and reads them after.
template <typename Metric>
class Family {
 public:
  using Factory = std::function<std::unique_ptr<Metric>()>;
  Family(std::string name, std::string help, std::vector<std::string> labels,
         Factory factory)
      : name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(labels)),
        factory_(std::move(factory)) {}

  // The child for `values` (one per label name), created on first use. The
  // reference is valid as long as the family. Thread-safe.
  Metric& With(const std::vector<std::string>& values);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return labels_; }
  // Children sorted by label values. Thread-safe.
  std::vector<std::pair<Labels, const Metric*>> Children() const;

 private:
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> labels_;
  const Factory factory_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

// Owns families and scrape-time collectors; Render writes every family in
// registration order, then every collector's samples. Adding a family or a
// collector is not meant to race with Render (set everything up first);
// updating metrics and With() may run concurrently with Render.
class Registry {
 public:
  using Collector = std::function<void(TextWriter&)>;

  Family<Counter>& AddCounterFamily(std::string name, std::string help,
                                    std::vector<std::string> labels);
  Family<Gauge>& AddGaugeFamily(std::string name, std::string help,
                                std::vector<std::string> labels);
  Family<Histogram>& AddHistogramFamily(std::string name, std::string help,
                                        std::vector<std::string> labels,
                                        std::vector<double> upper_bounds);
  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  Histogram& AddHistogram(std::string name, std::string help,
                          std::vector<double> upper_bounds);
  // Called on each Render (the scrape's thread) to write families whose
  // values are read from elsewhere at scrape time.
  void AddCollector(Collector collector);

  std::string Render() const;

 private:
  void Claim(const std::string& name, const std::vector<std::string>& labels);

  mutable std::mutex mu_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  // Rendering order: (kind 0 counter / 1 gauge / 2 histogram, index).
  std::vector<std::pair<int, size_t>> order_;
  std::vector<Collector> collectors_;
};

}  // namespace cmkfs::metrics
