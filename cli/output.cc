// The output of every command: tables, JSON documents and TSV rows.
#include <algorithm>

#include "cmkfs/units.h"
#include "command_support.h"

namespace cmkfs::cli {

Json TimeJson(TimePoint t) { return Json(FormatTime(t)); }
Json TimeJson(const std::optional<TimePoint>& t) {
  return t ? Json(FormatTime(*t)) : Json(nullptr);
}

namespace {

bool IsSizeField(std::string_view field) {
  return field == "size" || field.ends_with("_bytes");
}

// A value as a table cell: strings raw, null "-", arrays comma-joined,
// objects "key=value ...".
std::string TableCell(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  if (v.is_array()) {
    if (v.empty()) return "-";
    std::string out;
    for (const Json& item : v) {
      if (!out.empty()) out += ",";
      out += TableCell(item);
    }
    return out;
  }
  if (v.is_object()) {
    std::string out;
    for (const auto& [key, value] : v.items()) {
      if (!out.empty()) out += " ";
      out += key + "=" + TableCell(value);
    }
    return out;
  }
  return DumpJson(v, -1);
}

std::string ShowCell(std::string_view field, const Json& v) {
  if (v.is_number_integer() && IsSizeField(field)) {
    const auto n = v.get<uint64_t>();
    return std::to_string(n) + " (" + FormatSize(n) + ")";
  }
  return TableCell(v);
}

bool IsObjectArray(const Json& v) {
  return v.is_array() && !v.empty() && v.front().is_object();
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// Every table cell passes here: stored text (names, identities, audit
// entries, seal reasons) is printed with its control characters escaped, so
// that it cannot forge a row or a line.
void AppendRows(std::string& out, std::vector<std::vector<std::string>> rows) {
  for (auto& row : rows) {
    for (std::string& cell : row) cell = EscapeControl(cell);
  }
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
}

// A TSV field: strings raw, null empty, other scalars as in JSON, objects
// and arrays as compact JSON; control characters escaped (a tab as \t), so
// a field never splits a row.
std::string TsvField(const Json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return EscapeControl(v.get_ref<const std::string&>());
  return EscapeControl(DumpJson(v, -1));
}

void AppendTsvRow(std::string& out, const Json& record) {
  std::string line;
  if (record.is_object()) {
    bool first = true;
    for (const auto& [key, value] : record.items()) {
      if (!first) line += '\t';
      first = false;
      line += TsvField(value);
    }
  } else {
    line = TsvField(record);
  }
  out += line + "\n";
}

}  // namespace

std::string TsvText(const Json& doc) {
  std::string out;
  if (doc.is_array()) {
    for (const Json& record : doc) AppendTsvRow(out, record);
  } else {
    AppendTsvRow(out, doc);
  }
  return out;
}

void PrintDocument(Invocation& inv, const Json& doc) {
  if (inv.globals.output == "tsv") {
    inv.output.out += TsvText(doc);
    return;
  }
  inv.output.out += DumpJson(doc, 2);
  inv.output.out += "\n";
}

void PrintLine(Invocation& inv, std::string_view line) {
  inv.output.out.append(line);
  inv.output.out += "\n";
}

void PrintShow(Invocation& inv, const Json& record) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::pair<std::string, const Json*>> tables;
  for (const auto& [key, value] : record.items()) {
    if (IsObjectArray(value)) {
      tables.emplace_back(key, &value);
      continue;
    }
    rows.push_back({key, ShowCell(key, value)});
  }
  AppendRows(inv.output.out, std::move(rows));
  for (const auto& [key, value] : tables) {
    inv.output.out += "\n" + key + ":\n";
    std::vector<std::vector<std::string>> sub;
    std::vector<std::string> header;
    for (const auto& [k, v] : value->front().items())
      header.push_back(Upper(k));
    sub.push_back(header);
    for (const Json& item : *value) {
      std::vector<std::string> row;
      for (const auto& [k, v] : item.items()) row.push_back(TableCell(v));
      sub.push_back(row);
    }
    AppendRows(inv.output.out, std::move(sub));
  }
}

void PrintList(Invocation& inv, const Json& records,
               const std::vector<Column>& columns) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  for (const auto& c : columns) header.emplace_back(c.header);
  rows.push_back(header);
  for (const Json& r : records) {
    std::vector<std::string> row;
    for (const auto& c : columns) {
      auto it = r.find(std::string(c.field));
      const Json v = it == r.end() ? Json(nullptr) : *it;
      if (v.is_number_integer() && IsSizeField(c.field)) {
        row.push_back(FormatSize(v.get<uint64_t>()));
      } else {
        row.push_back(TableCell(v));
      }
    }
    rows.push_back(row);
  }
  AppendRows(inv.output.out, std::move(rows));
}

void Emit(Invocation& inv, const Json& record) {
  if (inv.document()) {
    PrintDocument(inv, record);
  } else {
    PrintShow(inv, record);
  }
}

void EmitList(Invocation& inv, const Json& records,
              const std::vector<Column>& columns) {
  if (inv.document()) {
    PrintDocument(inv, records);
  } else {
    PrintList(inv, records, columns);
  }
}

}  // namespace cmkfs::cli
