// Typed binary records stored in LMDB. Every record starts with a one-byte
// format version. Fields are little-endian fixed-width integers and
// length-prefixed (u32) byte strings. Decoders never trust input: every read
// is bounds-checked and a short or malformed record is Corruption.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/status.h"

namespace cmkfs {

class RecordWriter {
 public:
  explicit RecordWriter(uint8_t version);
  RecordWriter& U8(uint8_t v);
  RecordWriter& U32(uint32_t v);
  RecordWriter& U64(uint64_t v);
  RecordWriter& I64(int64_t v);
  RecordWriter& Bool(bool v);
  RecordWriter& Bytes(std::span<const uint8_t> v);
  RecordWriter& Str(std::string_view v);
  const std::string& data() const { return buf_; }
  std::string Take() { return std::move(buf_); }

 private:
  std::string buf_;
};

class RecordReader {
 public:
  // `what` names the record kind in error messages ("vault record").
  RecordReader(std::string_view data, std::string_view what);
  // Checks the version byte is one of [min_version, max_version].
  Status Version(uint8_t min_version, uint8_t max_version, uint8_t* out);
  Status U8(uint8_t* v);
  Status U32(uint32_t* v);
  Status U64(uint64_t* v);
  Status I64(int64_t* v);
  Status Bool(bool* v);
  Status Bytes(std::vector<uint8_t>* v);
  Status Str(std::string* v);
  // Corruption unless every byte was consumed.
  Status Done() const;
  size_t remaining() const { return data_.size() - pos_; }

 private:
  Status Need(size_t n, const char* field);
  Status LengthPrefixed(const char* field, std::string_view* out);
  std::string_view data_;
  std::string what_;
  size_t pos_ = 0;
};

// Order-preserving key encoding helpers (big-endian integers).
std::string EncodeU64Key(uint64_t v);
Result<uint64_t> DecodeU64Key(std::string_view key);

}  // namespace cmkfs
