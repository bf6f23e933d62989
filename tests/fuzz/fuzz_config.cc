// Fuzzes the cmkfs.toml loader and the unit parsers it relies on. Invariants:
// no crash, no sanitizer report, every error is one line that names the
// source, and a parsed config keeps its values inside their documented range.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cmkfs/config.h"
#include "cmkfs/units.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = cmkfs::ParseConfig(text, "fuzz.toml");
  FuzzReport(config.ok());
  if (config.ok()) {
    FUZZ_CHECK(config->watcher.poll_interval.count() >= 0,
               "negative poll interval accepted");
    FUZZ_CHECK(config->mount.mode <= 07777, "mount mode out of range");
    config->ResolveDefaults();
    FUZZ_CHECK(!config->keystore.dir.empty(), "keystore dir not resolved");
  } else {
    const cmkfs::Status st = config.status();
    const std::string& msg = st.message();
    FUZZ_CHECK(!msg.empty(), "empty error message");
    FUZZ_CHECK(msg.find('\n') == std::string::npos,
               "error message is more than one line");
    FUZZ_CHECK(msg.rfind("fuzz.toml", 0) == 0,
               "error message does not name the source");
  }
  // The same bytes as single values: sizes, durations, times.
  if (size <= 64) {
    (void)cmkfs::ParseSize(text);
    (void)cmkfs::ParseDuration(text);
    (void)cmkfs::ParseTime(text);
  }
  return 0;
}
