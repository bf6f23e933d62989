// A small JSON value with a writer (for `-o json`) and a strict parser (for
// tests and scripts that read cmkctl's output back). No dependency.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cmkfs/status.h"

namespace cmkfs::cli {

class Json {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Json() = default;
  Json(std::nullptr_t) {}                          // NOLINT
  Json(bool b) : type_(Type::kBool), bool_(b) {}   // NOLINT
  Json(int v) : type_(Type::kInt), int_(v) {}      // NOLINT
  Json(int64_t v) : type_(Type::kInt), int_(v) {}  // NOLINT
  Json(uint64_t v)                                 // NOLINT
      : type_(Type::kInt), int_(static_cast<int64_t>(v)) {}
  Json(uint32_t v) : type_(Type::kInt), int_(v) {}                   // NOLINT
  Json(double v) : type_(Type::kDouble), double_(v) {}               // NOLINT
  Json(std::string s) : type_(Type::kString), str_(std::move(s)) {}  // NOLINT
  Json(std::string_view s) : type_(Type::kString), str_(s) {}        // NOLINT
  Json(const char* s) : type_(Type::kString), str_(s) {}             // NOLINT

  static Json Array() {
    Json j;
    j.type_ = Type::kArray;
    return j;
  }
  static Json Object() {
    Json j;
    j.type_ = Type::kObject;
    return j;
  }
  // A string, or null when `s` is empty.
  static Json StringOrNull(std::string_view s) {
    return s.empty() ? Json() : Json(s);
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return int_; }
  double as_double() const { return type_ == Type::kInt ? int_ : double_; }
  const std::string& as_string() const { return str_; }
  const std::vector<Json>& items() const { return items_; }
  const std::vector<std::pair<std::string, Json>>& fields() const {
    return fields_;
  }

  // Appends to an array.
  Json& Push(Json v);
  // Sets (replacing) a field of an object; keeps insertion order.
  Json& Set(std::string_view key, Json v);
  // The field's value, or nullptr when absent or not an object.
  const Json* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  // The field, or a null value when absent.
  const Json& operator[](std::string_view key) const;
  const Json& operator[](size_t index) const { return items_.at(index); }
  size_t size() const {
    return type_ == Type::kArray ? items_.size() : fields_.size();
  }

  // Compact when indent < 0, else pretty-printed with that indent.
  std::string Dump(int indent = 2) const;
  // The value as a table cell: strings raw, null "-", arrays comma-joined.
  std::string ToCell() const;

  // Strict RFC 8259 parse of one document (surrounding whitespace allowed).
  static Result<Json> Parse(std::string_view text);

 private:
  void DumpTo(std::string& out, int indent, int depth) const;

  Type type_ = Type::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string str_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> fields_;
};

// Appends `s` as a quoted JSON string with escapes.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace cmkfs::cli
