#include "cmkfs/units.h"

#include <gtest/gtest.h>
#include <time.h>

namespace cmkfs {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

uint64_t SizeOf(std::string_view text) {
  Result<uint64_t> r = ParseSize(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : 0;
}

milliseconds DurationOf(std::string_view text) {
  Result<milliseconds> r = ParseDuration(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : milliseconds(-1);
}

TEST(ParseSize, AcceptsBytesAndBinarySuffixes) {
  EXPECT_EQ(SizeOf("4096"), 4096u);
  EXPECT_EQ(SizeOf("0"), 0u);
  EXPECT_EQ(SizeOf("64K"), 64u << 10);
  EXPECT_EQ(SizeOf("64M"), 64u << 20);
  EXPECT_EQ(SizeOf("10G"), 10ull << 30);
  EXPECT_EQ(SizeOf("1T"), 1ull << 40);
  EXPECT_EQ(SizeOf("64m"), 64u << 20);
  EXPECT_EQ(SizeOf("64MB"), 64u << 20);
  EXPECT_EQ(SizeOf("64MiB"), 64u << 20);
  EXPECT_EQ(SizeOf("64mib"), 64u << 20);
  EXPECT_EQ(SizeOf("512B"), 512u);
  EXPECT_EQ(SizeOf("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(SizeOf("16777215T"), 16777215ull << 40);
}

TEST(ParseSize, RejectsGarbageWithTheAcceptedForms) {
  for (std::string_view bad : {"", "M", "-1", "1.5G", "10X", "10GG", "10 G",
                               " 10G", "64iB", "10GBs", "0x10"}) {
    Result<uint64_t> r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(r.status().message(),
              "invalid size '" + std::string(bad) +
                  "': expected bytes or a number with K, M, G or T (e.g. "
                  "64M, 10G)");
  }
}

// A size that does not fit 64 bits says so, with the largest accepted size.
TEST(ParseSize, RefusesSizesBeyond64BitsAsTooLarge) {
  for (std::string_view huge :
       {"18446744073709551616", "99999999999999999999999", "16777216T",
        "18446744073709551615K"}) {
    Result<uint64_t> r = ParseSize(huge);
    ASSERT_FALSE(r.ok()) << huge;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(r.status().message(),
              "size '" + std::string(huge) +
                  "' is too large: sizes up to 16 EiB - 1 "
                  "(18446744073709551615 bytes) are accepted");
  }
}

// Stored or typed text cannot start a new line or drive the terminal.
TEST(EscapeControl, EscapesEveryControlCharacter) {
  EXPECT_EQ(EscapeControl("plain name-1.2_3"), "plain name-1.2_3");
  EXPECT_EQ(EscapeControl("evil\n2026-11-22T10:00:00Z key.purge ok"),
            "evil\\n2026-11-22T10:00:00Z key.purge ok");
  EXPECT_EQ(EscapeControl("a\rb\tc"), "a\\rb\\tc");
  EXPECT_EQ(EscapeControl(std::string("\x1b[2J\x00\x7f", 6)),
            "\\x1b[2J\\x00\\x7f");
  // U+009B (CSI) in UTF-8; other UTF-8 text is left alone.
  EXPECT_EQ(EscapeControl("x\xc2\x9b"
                          "31m \xc3\xa9"),
            "x\\u009b31m \xc3\xa9");
  EXPECT_EQ(EscapeControl("\xc2"), "\xc2");
  EXPECT_EQ(EscapeControl("").size(), 0u);
}

TEST(ParseDuration, AcceptsSimpleForms) {
  EXPECT_EQ(DurationOf("500ms"), milliseconds(500));
  EXPECT_EQ(DurationOf("30s"), seconds(30));
  EXPECT_EQ(DurationOf("1s"), seconds(1));
  EXPECT_EQ(DurationOf("5m"), minutes(5));
  EXPECT_EQ(DurationOf("1h"), hours(1));
  EXPECT_EQ(DurationOf("2d"), hours(48));
  EXPECT_EQ(DurationOf("1w"), hours(24 * 7));
  EXPECT_EQ(DurationOf("1h30m"), minutes(90));
  EXPECT_EQ(DurationOf("1S"), seconds(1));
  EXPECT_EQ(DurationOf("0s"), milliseconds(0));
}

TEST(ParseDuration, AcceptsIso8601) {
  EXPECT_EQ(DurationOf("P90D"), hours(24 * 90));
  EXPECT_EQ(DurationOf("PT1H30M"), minutes(90));
  EXPECT_EQ(DurationOf("PT5S"), seconds(5));
  EXPECT_EQ(DurationOf("P1Y"), hours(24 * 365));
  EXPECT_EQ(DurationOf("P1M"), hours(24 * 30));
  EXPECT_EQ(DurationOf("P1W"), hours(24 * 7));
  EXPECT_EQ(DurationOf("PT1M"), minutes(1));
  EXPECT_EQ(DurationOf("PT0.5S"), milliseconds(500));
  EXPECT_EQ(DurationOf("p1dt1h"), hours(25));
  EXPECT_EQ(DurationOf("P1Y2M3DT4H5M6S"),
            hours(24 * (365 + 60 + 3) + 4) + minutes(5) + seconds(6));
}

TEST(ParseDuration, RejectsNegativesAndGarbageNamingTheAcceptedForms) {
  for (std::string_view bad :
       {"", "-5s", "5", "5x", "s", "1.5h", "P", "PT", "P1DT", "P1H", "PT1D",
        "P1D1Y", "PT1S1H", "P1.5D", "P-1D", "1h 30m", "9999999999999999999s",
        "P99999999999Y"}) {
    Result<milliseconds> r = ParseDuration(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(r.status().message(),
              "invalid duration '" + std::string(bad) +
                  "': expected a number with ms, s, m, h, d or w (e.g. 500ms, "
                  "30s, 5m, 1h, 1h30m) or an ISO 8601 duration (e.g. P90D, "
                  "PT1H30M, P1Y2M3DT4H)");
  }
}

TEST(ParseTime, AcceptsRfc3339WithZuluOffsetsAndFractions) {
  // 2026-11-22T10:00:00Z is 1795341600 seconds after the epoch.
  const int64_t expected = 1795341600;
  auto secs = [](std::string_view text) -> int64_t {
    Result<TimePoint> r = ParseTime(text);
    EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    return r.ok() ? r->time_since_epoch().count() : -1;
  };
  EXPECT_EQ(secs("2026-11-22T10:00:00Z"), expected);
  EXPECT_EQ(secs("2026-11-22t10:00:00z"), expected);
  EXPECT_EQ(secs("2026-11-22T12:00:00+02:00"), expected);
  EXPECT_EQ(secs("2026-11-22T05:30:00-04:30"), expected);
  EXPECT_EQ(secs("2026-11-22T10:00:00.999Z"), expected);
  EXPECT_EQ(secs("2026-11-22T10:00:00.5+00:00"), expected);
  EXPECT_EQ(secs("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(secs("2024-02-29T00:00:00Z"), 1709164800);
}

TEST(ParseTime, RejectsMalformedTimes) {
  for (std::string_view bad :
       {"", "2026-11-22", "2026-11-22T10:00:00", "2026-11-22T10:00Z",
        "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z", "2026-11-22T10:00:00+2:00",
        "2026-11-22T10:00:00.Z", "2026-11-22T10:00:00Zjunk",
        "26-11-22T10:00:00Z", "yesterday"}) {
    Result<TimePoint> r = ParseTime(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(r.status().message(),
              "invalid time '" + std::string(bad) +
                  "': expected RFC 3339, e.g. 2026-11-22T10:00:00Z or "
                  "2026-11-22T10:00:00+02:00");
  }
}

TEST(FormatTime, IsUtcRfc3339AndRoundTrips) {
  TimePoint t{seconds(1795341600)};
  EXPECT_EQ(FormatTime(t), "2026-11-22T10:00:00Z");
  Result<TimePoint> back = ParseTime(FormatTime(t));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, t);
}

TEST(FormatDuration, IsCompactAndParsesBack) {
  EXPECT_EQ(FormatDuration(minutes(90)), "1h30m");
  EXPECT_EQ(FormatDuration(hours(24 * 90)), "90d");
  EXPECT_EQ(FormatDuration(seconds(5)), "5s");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1s500ms");
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0s");
  EXPECT_EQ(FormatDuration(seconds(-90)), "-1m30s");
  EXPECT_EQ(FormatDuration(milliseconds(INT64_MIN)).substr(0, 2), "-1");
  for (milliseconds d :
       {milliseconds(1), milliseconds(61001), milliseconds(90061001)}) {
    EXPECT_EQ(DurationOf(FormatDuration(d)), d) << FormatDuration(d);
  }
}

TEST(FormatSize, UsesBinaryUnits) {
  EXPECT_EQ(FormatSize(0), "0 B");
  EXPECT_EQ(FormatSize(1023), "1023 B");
  EXPECT_EQ(FormatSize(1024), "1 KiB");
  EXPECT_EQ(FormatSize(64ull << 20), "64 MiB");
  EXPECT_EQ(FormatSize(3ull << 29), "1.5 GiB");
  EXPECT_EQ(FormatSize(1ull << 40), "1 TiB");
}

// Checked against the kernel's realtime clock read directly (not the
// std::chrono clock Now() wraps): Now() is whole seconds since the Unix
// epoch, taken between the two readings (a Now() on another clock, such
// as steady_clock, or in other units, lands outside them).
TEST(Now, IsTheRealtimeClockInWholeSeconds) {
  timespec before{};
  timespec after{};
  ASSERT_EQ(clock_gettime(CLOCK_REALTIME, &before), 0);
  const TimePoint now = Now();
  ASSERT_EQ(clock_gettime(CLOCK_REALTIME, &after), 0);
  const int64_t secs = now.time_since_epoch().count();
  EXPECT_GE(secs, static_cast<int64_t>(before.tv_sec));
  EXPECT_LE(secs, static_cast<int64_t>(after.tv_sec));
}

}  // namespace
}  // namespace cmkfs
