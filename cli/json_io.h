// cmkctl's JSON documents: nlohmann/json (Debian's nlohmann-json3-dev) with
// insertion-ordered objects, so the fields print in the order they are set.
// ParseJson is the boundary to the library for text from outside: no
// exception passes it.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cmkfs/status.h"

namespace cmkfs::cli {

using Json = nlohmann::ordered_json;

// Bounds on a document read from outside the process (a daemon's reply, a
// file): a larger or deeper one is refused before it is built.
struct JsonLimits {
  size_t max_bytes = size_t{1} << 20;  // the control socket's frame bound
  int max_depth = 64;                  // cmkctl's documents nest 3 deep
};

// Strict RFC 8259 parse of one document (surrounding whitespace allowed; no
// comments). InvalidArgument with one line naming what is wrong and where:
// "invalid JSON: ...". Never throws.
Result<Json> ParseJson(std::string_view text, const JsonLimits& limits = {});

// The document as text: pretty-printed with `indent` spaces, or compact when
// indent < 0. Invalid UTF-8 in a string is replaced by U+FFFD, so the text
// is always valid JSON. Throws nothing but std::bad_alloc.
std::string DumpJson(const Json& doc, int indent = 2);

// A string, or null when `s` is empty.
inline Json StringOrNull(std::string_view s) {
  return s.empty() ? Json(nullptr) : Json(s);
}

}  // namespace cmkfs::cli
