#include "json_io.h"

#include <exception>

#include "cmkfs/units.h"

namespace cmkfs::cli {
namespace {

struct TooDeep {};

// "[json.exception.parse_error.101] parse error at ..." without the tag.
std::string WithoutTag(std::string_view what) {
  if (what.starts_with("[json.exception.")) {
    if (size_t end = what.find("] "); end != std::string_view::npos) {
      what.remove_prefix(end + 2);
    }
  }
  return EscapeControl(what);
}

}  // namespace

Result<Json> ParseJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return InvalidArgumentError(
        "invalid JSON: the document has " + std::to_string(text.size()) +
        " bytes, more than the limit of " + std::to_string(limits.max_bytes));
  }
  const Json::parser_callback_t bound =
      [&limits](int depth, Json::parse_event_t event, Json&) {
        if ((event == Json::parse_event_t::object_start ||
             event == Json::parse_event_t::array_start) &&
            depth >= limits.max_depth) {
          throw TooDeep{};
        }
        return true;
      };
  try {
    return Json::parse(text.begin(), text.end(), bound,
                       /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const TooDeep&) {
    return InvalidArgumentError("invalid JSON: nested deeper than " +
                                std::to_string(limits.max_depth) + " levels");
  } catch (const std::exception& e) {
    return InvalidArgumentError("invalid JSON: " + WithoutTag(e.what()));
  }
}

std::string DumpJson(const Json& doc, int indent) {
  // With the replace handler, dump() throws nothing but std::bad_alloc.
  return doc.dump(indent, ' ', /*ensure_ascii=*/false,
                  Json::error_handler_t::replace);
}

}  // namespace cmkfs::cli
