// Parsing and formatting of sizes, durations and times, as the CLI and the
// config accept them, and of text for one-line output. All functions are pure
// and thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<Clock, std::chrono::seconds>;

// "4096", "64K", "64M", "10G", "1T" (binary multiples, optional "iB"/"B"
// suffix). Errors name the input and the accepted forms; a size that does not
// fit 64 bits is refused as too large. Callers bound sizes further (the
// largest disk, docs/config.md [limits] max_disk_size).
Result<uint64_t> ParseSize(std::string_view text);
// "30s", "5m", "1h", "2d", "500ms", and ISO 8601 durations such as "P90D",
// "PT1H30M", "P1Y" (365 days), "P1M" (30 days).
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// RFC 3339: "2026-11-22T10:00:00Z", "2026-11-22T10:00:00+02:00",
// fractional seconds accepted and dropped.
Result<TimePoint> ParseTime(std::string_view text);
// RFC 3339 in UTC, "2026-11-22T10:00:00Z".
std::string FormatTime(TimePoint t);
// "1h30m", "90d", "5s": compact human form.
std::string FormatDuration(std::chrono::milliseconds d);
// "1.5 GiB" style human size.
std::string FormatSize(uint64_t bytes);
TimePoint Now();
// `text` with every control character escaped ("\n", "\r", "\t", "\xNN",
// and the C1 controls U+0080..U+009F as "\u0080".."\u009f"), so that stored
// or user-supplied text prints on one line and cannot forge lines or move
// the terminal's cursor. Error messages and every table cell go through it.
std::string EscapeControl(std::string_view text);

}  // namespace cmkfs
