#include "cmkfs/record.h"

#include <cstring>

namespace cmkfs {
namespace {

// A byte string longer than this is refused by the decoder: no record stored
// by cmkfs comes near it, so a larger prefix means a damaged record.
constexpr uint32_t kMaxByteStringLength = 16u << 20;

template <typename T>
void AppendLittleEndian(std::string* buf, T v) {
  using U = std::make_unsigned_t<T>;
  U u = static_cast<U>(v);
  for (size_t i = 0; i < sizeof(T); ++i) {
    buf->push_back(static_cast<char>(static_cast<uint8_t>(u >> (8 * i))));
  }
}

template <typename T>
T LoadLittleEndian(const char* p) {
  using U = std::make_unsigned_t<T>;
  U u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    u |= static_cast<U>(static_cast<uint8_t>(p[i])) << (8 * i);
  }
  return static_cast<T>(u);
}

}  // namespace

RecordWriter::RecordWriter(uint8_t version) {
  buf_.push_back(static_cast<char>(version));
}

RecordWriter& RecordWriter::U8(uint8_t v) {
  buf_.push_back(static_cast<char>(v));
  return *this;
}

RecordWriter& RecordWriter::U32(uint32_t v) {
  AppendLittleEndian(&buf_, v);
  return *this;
}

RecordWriter& RecordWriter::U64(uint64_t v) {
  AppendLittleEndian(&buf_, v);
  return *this;
}

RecordWriter& RecordWriter::I64(int64_t v) {
  AppendLittleEndian(&buf_, v);
  return *this;
}

RecordWriter& RecordWriter::Bool(bool v) { return U8(v ? 1 : 0); }

RecordWriter& RecordWriter::Bytes(std::span<const uint8_t> v) {
  AppendLittleEndian(&buf_, static_cast<uint32_t>(v.size()));
  buf_.append(reinterpret_cast<const char*>(v.data()), v.size());
  return *this;
}

RecordWriter& RecordWriter::Str(std::string_view v) {
  AppendLittleEndian(&buf_, static_cast<uint32_t>(v.size()));
  buf_.append(v.data(), v.size());
  return *this;
}

RecordReader::RecordReader(std::string_view data, std::string_view what)
    : data_(data), what_(what) {}

Status RecordReader::Need(size_t n, const char* field) {
  if (remaining() < n) {
    return CorruptionError(what_ + ": truncated at field '" + field + "' (" +
                           std::to_string(n) + " bytes needed, " +
                           std::to_string(remaining()) + " left)");
  }
  return Status::Ok();
}

Status RecordReader::Version(uint8_t min_version, uint8_t max_version,
                             uint8_t* out) {
  CMKFS_RETURN_IF_ERROR(Need(1, "version"));
  uint8_t v = static_cast<uint8_t>(data_[pos_]);
  if (v < min_version || v > max_version) {
    return CorruptionError(what_ + ": unsupported format version " +
                           std::to_string(v) + " (this build reads " +
                           std::to_string(min_version) + ".." +
                           std::to_string(max_version) + ")");
  }
  ++pos_;
  *out = v;
  return Status::Ok();
}

Status RecordReader::U8(uint8_t* v) {
  CMKFS_RETURN_IF_ERROR(Need(1, "u8"));
  *v = static_cast<uint8_t>(data_[pos_++]);
  return Status::Ok();
}

Status RecordReader::U32(uint32_t* v) {
  CMKFS_RETURN_IF_ERROR(Need(4, "u32"));
  *v = LoadLittleEndian<uint32_t>(data_.data() + pos_);
  pos_ += 4;
  return Status::Ok();
}

Status RecordReader::U64(uint64_t* v) {
  CMKFS_RETURN_IF_ERROR(Need(8, "u64"));
  *v = LoadLittleEndian<uint64_t>(data_.data() + pos_);
  pos_ += 8;
  return Status::Ok();
}

Status RecordReader::I64(int64_t* v) {
  CMKFS_RETURN_IF_ERROR(Need(8, "i64"));
  *v = LoadLittleEndian<int64_t>(data_.data() + pos_);
  pos_ += 8;
  return Status::Ok();
}

Status RecordReader::Bool(bool* v) {
  CMKFS_RETURN_IF_ERROR(Need(1, "bool"));
  uint8_t b = static_cast<uint8_t>(data_[pos_]);
  if (b > 1) {
    return CorruptionError(what_ + ": field 'bool' holds " + std::to_string(b) +
                           ", expected 0 or 1");
  }
  ++pos_;
  *v = b == 1;
  return Status::Ok();
}

Status RecordReader::LengthPrefixed(const char* field, std::string_view* out) {
  CMKFS_RETURN_IF_ERROR(Need(4, field));
  uint32_t len = LoadLittleEndian<uint32_t>(data_.data() + pos_);
  if (len > kMaxByteStringLength) {
    return CorruptionError(what_ + ": field '" + field + "' has length " +
                           std::to_string(len) + ", over the limit of " +
                           std::to_string(kMaxByteStringLength));
  }
  if (remaining() - 4 < len) {
    return CorruptionError(what_ + ": truncated at field '" + field + "' (" +
                           std::to_string(len) + " bytes needed, " +
                           std::to_string(remaining() - 4) + " left)");
  }
  *out = data_.substr(pos_ + 4, len);
  pos_ += 4 + len;
  return Status::Ok();
}

Status RecordReader::Bytes(std::vector<uint8_t>* v) {
  std::string_view bytes;
  CMKFS_RETURN_IF_ERROR(LengthPrefixed("bytes", &bytes));
  v->assign(bytes.begin(), bytes.end());
  return Status::Ok();
}

Status RecordReader::Str(std::string* v) {
  std::string_view bytes;
  CMKFS_RETURN_IF_ERROR(LengthPrefixed("str", &bytes));
  v->assign(bytes);
  return Status::Ok();
}

Status RecordReader::Done() const {
  if (remaining() != 0) {
    return CorruptionError(what_ + ": " + std::to_string(remaining()) +
                           " unexpected trailing bytes");
  }
  return Status::Ok();
}

std::string EncodeU64Key(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(static_cast<uint8_t>(v));
    v >>= 8;
  }
  return out;
}

Result<uint64_t> DecodeU64Key(std::string_view key) {
  if (key.size() != 8) {
    return CorruptionError("u64 key: expected 8 bytes, got " +
                           std::to_string(key.size()));
  }
  uint64_t v = 0;
  for (char c : key) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

}  // namespace cmkfs
