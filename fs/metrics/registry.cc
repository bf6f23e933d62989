#include "registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace cmkfs::metrics {
namespace {

// A programming error (a bad constant name): say which and stop.
[[noreturn]] void Misuse(const std::string& what) {
  std::fprintf(stderr, "cmkfs metrics: %s\n", what.c_str());
  std::abort();
}

bool NameChar(char c, bool first, bool colon) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  const bool digit = c >= '0' && c <= '9';
  return alpha || c == '_' || (colon && c == ':') || (!first && digit);
}

// Length of the UTF-8 sequence at s[i] if it is valid (no overlongs, no
// surrogates, at most U+10FFFF), else 0.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t len = 0;
  uint32_t cp = 0;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
    return 0;
  }
  return len;
}

constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD

}  // namespace

// --- Histogram ---------------------------------------------------------------

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
      Misuse("histogram bounds must be finite and ascending");
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) noexcept {
  // First bucket whose bound is >= value ("le"); NaN lands in +Inf.
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) -
      bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}

// --- text format -------------------------------------------------------------

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, /*colon=*/true)) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!NameChar(name[i], i == 0, /*colon=*/false)) return false;
  }
  return true;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size();) {
    const char c = value[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') ||
               c == 0x7f) {
      out += kReplacement;
    } else {
      const size_t len = Utf8Length(value, i);
      if (len == 0) {
        out += kReplacement;
        ++i;
        continue;
      }
      out.append(value.substr(i, len));
      i += len;
      continue;
    }
    ++i;
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

void TextWriter::BeginFamily(std::string_view name, std::string_view help,
                             std::string_view type) {
  if (!ValidMetricName(name))
    Misuse("bad metric name '" + std::string(name) + "'");
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += EscapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::SampleLine(std::string_view name, const Labels& labels,
                            const std::string& value) {
  if (!ValidMetricName(name))
    Misuse("bad metric name '" + std::string(name) + "'");
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (!ValidLabelName(labels[i].first))
        Misuse("bad label name '" + labels[i].first + "'");
      if (i > 0) out_ += ',';
      out_ += labels[i].first;
      out_ += "=\"";
      out_ += EscapeLabelValue(labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += value;
  out_ += '\n';
}

void TextWriter::Sample(std::string_view name, const Labels& labels,
                        double value) {
  SampleLine(name, labels, FormatValue(value));
}

void TextWriter::Sample(std::string_view name, const Labels& labels,
                        uint64_t value) {
  SampleLine(name, labels, std::to_string(value));
}

void TextWriter::HistogramSamples(std::string_view name, const Labels& labels,
                                  const Histogram::Snapshot& h) {
  const std::string base(name);
  Labels with_le = labels;
  with_le.emplace_back("le", "");
  for (size_t i = 0; i <= h.upper_bounds.size(); ++i) {
    with_le.back().second =
        i < h.upper_bounds.size() ? FormatValue(h.upper_bounds[i]) : "+Inf";
    Sample(base + "_bucket", with_le, h.cumulative[i]);
  }
  Sample(base + "_sum", labels, h.sum);
  Sample(base + "_count", labels, h.count());
}

// --- Family ------------------------------------------------------------------

template <typename Metric>
Metric& Family<Metric>::With(const std::vector<std::string>& values) {
  if (values.size() != labels_.size()) {
    Misuse(name_ + ": " + std::to_string(values.size()) + " label values for " +
           std::to_string(labels_.size()) + " labels");
  }
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) it = children_.emplace(values, factory_()).first;
  return *it->second;
}

template <typename Metric>
std::vector<std::pair<Labels, const Metric*>> Family<Metric>::Children() const {
  std::vector<std::pair<Labels, const Metric*>> out;
  std::lock_guard lock(mu_);
  out.reserve(children_.size());
  for (const auto& [values, metric] : children_) {
    Labels labels;
    for (size_t i = 0; i < labels_.size(); ++i)
      labels.emplace_back(labels_[i], values[i]);
    out.emplace_back(std::move(labels), metric.get());
  }
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry ----------------------------------------------------------------

void Registry::Claim(const std::string& name,
                     const std::vector<std::string>& labels) {
  if (!ValidMetricName(name)) Misuse("bad metric name '" + name + "'");
  for (const std::string& l : labels) {
    if (!ValidLabelName(l) || l == "le")
      Misuse(name + ": bad label name '" + l + "'");
  }
  if (std::find(names_.begin(), names_.end(), name) != names_.end())
    Misuse("metric " + name + " registered twice");
  names_.push_back(name);
}

Family<Counter>& Registry::AddCounterFamily(std::string name, std::string help,
                                            std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  Claim(name, labels);
  counters_.push_back(std::make_unique<Family<Counter>>(
      std::move(name), std::move(help), std::move(labels),
      [] { return std::make_unique<Counter>(); }));
  order_.emplace_back(0, counters_.size() - 1);
  return *counters_.back();
}

Family<Gauge>& Registry::AddGaugeFamily(std::string name, std::string help,
                                        std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  Claim(name, labels);
  gauges_.push_back(std::make_unique<Family<Gauge>>(
      std::move(name), std::move(help), std::move(labels),
      [] { return std::make_unique<Gauge>(); }));
  order_.emplace_back(1, gauges_.size() - 1);
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogramFamily(
    std::string name, std::string help, std::vector<std::string> labels,
    std::vector<double> upper_bounds) {
  std::lock_guard lock(mu_);
  Claim(name, labels);
  histograms_.push_back(std::make_unique<Family<Histogram>>(
      std::move(name), std::move(help), std::move(labels),
      [bounds = std::move(upper_bounds)] {
        return std::make_unique<Histogram>(bounds);
      }));
  order_.emplace_back(2, histograms_.size() - 1);
  return *histograms_.back();
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  return AddCounterFamily(std::move(name), std::move(help), {}).With({});
}

Gauge& Registry::AddGauge(std::string name, std::string help) {
  return AddGaugeFamily(std::move(name), std::move(help), {}).With({});
}

Histogram& Registry::AddHistogram(std::string name, std::string help,
                                  std::vector<double> upper_bounds) {
  return AddHistogramFamily(std::move(name), std::move(help), {},
                            std::move(upper_bounds))
      .With({});
}

void Registry::AddCollector(Collector collector) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Render() const {
  TextWriter w;
  std::lock_guard lock(mu_);
  for (auto [kind, index] : order_) {
    if (kind == 0) {
      const Family<Counter>& f = *counters_[index];
      w.BeginFamily(f.name(), f.help(), "counter");
      for (const auto& [labels, c] : f.Children())
        w.Sample(f.name(), labels, c->value());
    } else if (kind == 1) {
      const Family<Gauge>& f = *gauges_[index];
      w.BeginFamily(f.name(), f.help(), "gauge");
      for (const auto& [labels, g] : f.Children())
        w.Sample(f.name(), labels, g->value());
    } else {
      const Family<Histogram>& f = *histograms_[index];
      w.BeginFamily(f.name(), f.help(), "histogram");
      for (const auto& [labels, h] : f.Children())
        w.HistogramSamples(f.name(), labels, h->snapshot());
    }
  }
  for (const Collector& c : collectors_) c(w);
  return w.Take();
}

}  // namespace cmkfs::metrics
