#include "cmkfs/units.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace cmkfs {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kMsPerSecond = 1000;
constexpr uint64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr uint64_t kMsPerHour = 60 * kMsPerMinute;
constexpr uint64_t kMsPerDay = 24 * kMsPerHour;
constexpr uint64_t kMsPerWeek = 7 * kMsPerDay;
// ISO 8601 calendar units have no fixed length; cmkfs fixes them.
constexpr uint64_t kMsPerYear = 365 * kMsPerDay;
constexpr uint64_t kMsPerMonth = 30 * kMsPerDay;
// Durations are stored in signed 64-bit milliseconds.
constexpr uint64_t kMaxDurationMs = static_cast<uint64_t>(INT64_MAX);

char Lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads a run of decimal digits at `pos`; false if none or on overflow.
bool ReadNumber(std::string_view s, size_t* pos, uint64_t* out) {
  size_t start = *pos;
  uint64_t v = 0;
  while (*pos < s.size() && IsDigit(s[*pos])) {
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, static_cast<uint64_t>(s[*pos] - '0'), &v)) {
      return false;
    }
    ++*pos;
  }
  *out = v;
  return *pos > start;
}

// Accumulates `n * unit` into `total`, false on overflow.
bool AddScaled(uint64_t n, uint64_t unit, uint64_t* total) {
  uint64_t scaled;
  if (__builtin_mul_overflow(n, unit, &scaled)) return false;
  if (__builtin_add_overflow(*total, scaled, total)) return false;
  return *total <= kMaxDurationMs;
}

Status BadDuration(std::string_view text) {
  return InvalidArgumentError(
      "invalid duration '" + std::string(text) +
      "': expected a number with ms, s, m, h, d or w (e.g. 500ms, 30s, 5m, "
      "1h, 1h30m) or an ISO 8601 duration (e.g. P90D, PT1H30M, P1Y2M3DT4H)");
}

// "1h30m", "500ms", "2d": one or more <number><unit> pairs.
bool ParseSimpleDuration(std::string_view s, uint64_t* total) {
  size_t pos = 0;
  *total = 0;
  if (s.empty()) return false;
  while (pos < s.size()) {
    uint64_t n;
    if (!ReadNumber(s, &pos, &n)) return false;
    size_t unit_start = pos;
    while (pos < s.size() && !IsDigit(s[pos])) ++pos;
    std::string unit;
    for (char c : s.substr(unit_start, pos - unit_start)) unit += Lower(c);
    uint64_t scale;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = kMsPerSecond;
    } else if (unit == "m") {
      scale = kMsPerMinute;
    } else if (unit == "h") {
      scale = kMsPerHour;
    } else if (unit == "d") {
      scale = kMsPerDay;
    } else if (unit == "w") {
      scale = kMsPerWeek;
    } else {
      return false;
    }
    if (!AddScaled(n, scale, total)) return false;
  }
  return true;
}

// "P1Y2M3DT4H5M6.5S", "P1W". Seconds may carry a fraction (kept to the ms).
bool ParseIsoDuration(std::string_view s, uint64_t* total) {
  *total = 0;
  if (s.size() < 2 || Lower(s[0]) != 'p') return false;
  size_t pos = 1;
  bool in_time = false;
  bool any = false;
  // Designators must appear in this order; index of the last one seen.
  static constexpr std::string_view kDateOrder = "ymwd";
  static constexpr std::string_view kTimeOrder = "hms";
  size_t next_allowed = 0;
  while (pos < s.size()) {
    if (Lower(s[pos]) == 't') {
      if (in_time) return false;
      in_time = true;
      next_allowed = 0;
      ++pos;
      if (pos == s.size()) return false;  // "P1DT" has no time part
      continue;
    }
    uint64_t n;
    if (!ReadNumber(s, &pos, &n)) return false;
    uint64_t frac_ms = 0;
    bool has_fraction = false;
    if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
      ++pos;
      uint64_t scale = 100;
      size_t digits_start = pos;
      while (pos < s.size() && IsDigit(s[pos])) {
        frac_ms += static_cast<uint64_t>(s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == digits_start) return false;
      has_fraction = true;
    }
    if (pos == s.size()) return false;
    char designator = Lower(s[pos++]);
    std::string_view order = in_time ? kTimeOrder : kDateOrder;
    size_t idx = order.find(designator);
    if (idx == std::string_view::npos || idx < next_allowed) return false;
    next_allowed = idx + 1;
    if (has_fraction && !(in_time && designator == 's')) return false;
    uint64_t unit;
    if (!in_time) {
      unit = designator == 'y'   ? kMsPerYear
             : designator == 'm' ? kMsPerMonth
             : designator == 'w' ? kMsPerWeek
                                 : kMsPerDay;
    } else {
      unit = designator == 'h'   ? kMsPerHour
             : designator == 'm' ? kMsPerMinute
                                 : kMsPerSecond;
    }
    if (!AddScaled(n, unit, total)) return false;
    if (!AddScaled(frac_ms, 1, total)) return false;
    any = true;
  }
  return any;
}

bool ReadFixedDigits(std::string_view s, size_t pos, size_t count, int* out) {
  if (pos + count > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (!IsDigit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  if (month == 2 && IsLeapYear(year)) return 29;
  return kDays[month - 1];
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError(
        "invalid size '" + std::string(text) +
        "': expected bytes or a number with K, M, G or T (e.g. 64M, 10G)");
  };
  auto too_large = [&] {
    return InvalidArgumentError("size '" + std::string(text) +
                                "' is too large: sizes up to 16 EiB - 1 "
                                "(18446744073709551615 bytes) are accepted");
  };
  size_t pos = 0;
  uint64_t n;
  if (!ReadNumber(text, &pos, &n)) {
    return pos < text.size() && IsDigit(text[pos]) ? too_large() : bad();
  }
  std::string suffix;
  for (char c : text.substr(pos)) suffix += Lower(c);
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
    std::string_view rest = suffix;
    if (shift != 0) rest.remove_prefix(1);
    bool valid_rest =
        rest.empty() || rest == "b" || (shift != 0 && rest == "ib");
    if (!valid_rest) return bad();
  }
  if (shift != 0 && n > (UINT64_MAX >> shift)) return too_large();
  return n << shift;
}

Result<milliseconds> ParseDuration(std::string_view text) {
  uint64_t total_ms = 0;
  bool ok = !text.empty() && Lower(text[0]) == 'p'
                ? ParseIsoDuration(text, &total_ms)
                : ParseSimpleDuration(text, &total_ms);
  if (!ok) return BadDuration(text);
  return milliseconds(static_cast<int64_t>(total_ms));
}

Result<TimePoint> ParseTime(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError(
        "invalid time '" + std::string(text) +
        "': expected RFC 3339, e.g. 2026-11-22T10:00:00Z or "
        "2026-11-22T10:00:00+02:00");
  };
  // YYYY-MM-DDTHH:MM:SS
  int year, month, day, hour, minute, second;
  const std::string_view s = text;
  if (s.size() < 20 || !ReadFixedDigits(s, 0, 4, &year) || s[4] != '-' ||
      !ReadFixedDigits(s, 5, 2, &month) || s[7] != '-' ||
      !ReadFixedDigits(s, 8, 2, &day) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !ReadFixedDigits(s, 11, 2, &hour) || s[13] != ':' ||
      !ReadFixedDigits(s, 14, 2, &minute) || s[16] != ':' ||
      !ReadFixedDigits(s, 17, 2, &second)) {
    return bad();
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) ||
      hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  size_t pos = 19;
  if (s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    if (pos == start) return bad();
  }
  if (pos >= s.size()) return bad();
  int64_t offset_seconds = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!ReadFixedDigits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() ||
        s[pos + 3] != ':' || !ReadFixedDigits(s, pos + 4, 2, &om) || oh > 23 ||
        om > 59) {
      return bad();
    }
    offset_seconds = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != s.size()) return bad();
  struct tm tm = {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t t = timegm(&tm);
  return TimePoint(
      std::chrono::seconds(static_cast<int64_t>(t) - offset_seconds));
}

std::string FormatTime(TimePoint t) {
  time_t secs = static_cast<time_t>(t.time_since_epoch().count());
  struct tm tm;
  if (gmtime_r(&secs, &tm) == nullptr) return "invalid-time";
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string FormatDuration(milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out = ms < 0 ? "-" : "";
  // Negated in unsigned arithmetic: -INT64_MIN does not fit an int64_t.
  uint64_t rest =
      ms < 0 ? 0 - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
  struct Unit {
    uint64_t ms;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{kMsPerDay, "d"},
                                    {kMsPerHour, "h"},
                                    {kMsPerMinute, "m"},
                                    {kMsPerSecond, "s"},
                                    {1, "ms"}};
  for (const Unit& u : kUnits) {
    if (rest >= u.ms) {
      out += std::to_string(rest / u.ms);
      out += u.name;
      rest %= u.ms;
    }
  }
  return out;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB",
                                           "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024.0 && unit < 5) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1f", value);
  std::string num(buf);
  if (num.size() > 2 && num.compare(num.size() - 2, 2, ".0") == 0) {
    num.resize(num.size() - 2);
  }
  return num + " " + kUnits[unit];
}

std::string EscapeControl(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    const auto next =
        i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else if (u == 0xc2 && next >= 0x80 && next <= 0x9f) {
      // UTF-8 of a C1 control (U+0080..U+009F, e.g. CSI).
      out += "\\u00";
      out += kHex[next >> 4];
      out += kHex[next & 0xf];
      ++i;
    } else {
      out += c;
    }
  }
  return out;
}

TimePoint Now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(Clock::now());
}

}  // namespace cmkfs
