#include "cmkfs/record.h"

#include <gtest/gtest.h>

namespace cmkfs {
namespace {

struct Sample {
  uint8_t u8 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  int64_t i64 = 0;
  bool flag = false;
  std::vector<uint8_t> bytes;
  std::string str;
};

std::string Encode(const Sample& s) {
  return RecordWriter(2)
      .U8(s.u8)
      .U32(s.u32)
      .U64(s.u64)
      .I64(s.i64)
      .Bool(s.flag)
      .Bytes(s.bytes)
      .Str(s.str)
      .Take();
}

Status Decode(std::string_view data, Sample* s) {
  RecordReader r(data, "sample record");
  uint8_t version;
  CMKFS_RETURN_IF_ERROR(r.Version(1, 2, &version));
  CMKFS_RETURN_IF_ERROR(r.U8(&s->u8));
  CMKFS_RETURN_IF_ERROR(r.U32(&s->u32));
  CMKFS_RETURN_IF_ERROR(r.U64(&s->u64));
  CMKFS_RETURN_IF_ERROR(r.I64(&s->i64));
  CMKFS_RETURN_IF_ERROR(r.Bool(&s->flag));
  CMKFS_RETURN_IF_ERROR(r.Bytes(&s->bytes));
  CMKFS_RETURN_IF_ERROR(r.Str(&s->str));
  return r.Done();
}

Sample Full() {
  Sample s;
  s.u8 = 0xAB;
  s.u32 = 0xDEADBEEF;
  s.u64 = 0x0123456789ABCDEFull;
  s.i64 = -42;
  s.flag = true;
  s.bytes = {0, 1, 2, 255};
  s.str = std::string("name\0with nul", 13);
  return s;
}

TEST(Record, RoundTripsEveryFieldType) {
  Sample in = Full();
  Sample out;
  Status s = Decode(Encode(in), &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out.u8, in.u8);
  EXPECT_EQ(out.u32, in.u32);
  EXPECT_EQ(out.u64, in.u64);
  EXPECT_EQ(out.i64, in.i64);
  EXPECT_EQ(out.flag, in.flag);
  EXPECT_EQ(out.bytes, in.bytes);
  EXPECT_EQ(out.str, in.str);
}

TEST(Record, LayoutIsLittleEndianWithU32LengthPrefixes) {
  std::string data = RecordWriter(7).U32(0x01020304).Str("ab").Take();
  EXPECT_EQ(data, std::string("\x07\x04\x03\x02\x01\x02\x00\x00\x00"
                              "ab",
                              11));
}

TEST(Record, EveryTruncationIsCorruptionNamingRecordAndField) {
  std::string full = Encode(Full());
  for (size_t len = 0; len < full.size(); ++len) {
    Sample out;
    Status s = Decode(std::string_view(full).substr(0, len), &out);
    ASSERT_EQ(s.kind(), ErrorKind::kCorruption) << len << ": " << s.ToString();
    EXPECT_EQ(s.message().rfind("sample record: truncated at field '", 0), 0u)
        << s.message();
  }
}

TEST(Record, TruncationMessageNamesTheField) {
  std::string data = RecordWriter(1).U32(5).U64(7).Take();
  RecordReader r(std::string_view(data).substr(0, 1 + 4 + 3), "vault record");
  uint8_t version;
  uint32_t u32;
  uint64_t u64;
  ASSERT_TRUE(r.Version(1, 1, &version).ok());
  ASSERT_TRUE(r.U32(&u32).ok());
  Status s = r.U64(&u64);
  EXPECT_EQ(s.kind(), ErrorKind::kCorruption);
  EXPECT_EQ(s.message(),
            "vault record: truncated at field 'u64' (8 bytes needed, 3 left)");
}

TEST(Record, TrailingBytesAreCorruption) {
  std::string data = Encode(Full()) + "x";
  Sample out;
  Status s = Decode(data, &out);
  EXPECT_EQ(s.kind(), ErrorKind::kCorruption);
  EXPECT_EQ(s.message(), "sample record: 1 unexpected trailing bytes");
}

TEST(Record, VersionOutsideTheRangeIsRefused) {
  for (uint8_t v : {0, 3, 255}) {
    std::string data = RecordWriter(v).Take();
    RecordReader r(data, "disk record");
    uint8_t version = 99;
    Status s = r.Version(1, 2, &version);
    EXPECT_EQ(s.kind(), ErrorKind::kCorruption);
    EXPECT_EQ(s.message(), "disk record: unsupported format version " +
                               std::to_string(v) + " (this build reads 1..2)");
    EXPECT_EQ(version, 99);
  }
  for (uint8_t v : {1, 2}) {
    std::string data = RecordWriter(v).Take();
    RecordReader r(data, "disk record");
    uint8_t version = 0;
    EXPECT_TRUE(r.Version(1, 2, &version).ok());
    EXPECT_EQ(version, v);
  }
}

TEST(Record, AbsurdLengthPrefixIsRefused) {
  // 1 GiB claimed, 4 bytes present.
  std::string data = RecordWriter(1).U32(1u << 30).Take() + "abcd";
  RecordReader r(data, "key record");
  uint8_t version;
  ASSERT_TRUE(r.Version(1, 1, &version).ok());
  std::string str;
  Status s = r.Str(&str);
  EXPECT_EQ(s.kind(), ErrorKind::kCorruption);
  EXPECT_EQ(s.message(),
            "key record: field 'str' has length 1073741824, over the limit of "
            "16777216");
}

TEST(Record, BoolOtherThanZeroOrOneIsCorruption) {
  std::string data = RecordWriter(1).U8(2).Take();
  RecordReader r(data, "policy record");
  uint8_t version;
  bool flag;
  ASSERT_TRUE(r.Version(1, 1, &version).ok());
  Status s = r.Bool(&flag);
  EXPECT_EQ(s.kind(), ErrorKind::kCorruption);
  EXPECT_EQ(s.message(),
            "policy record: field 'bool' holds 2, expected 0 or 1");
}

TEST(U64Key, IsBigEndianAndOrderPreserving) {
  EXPECT_EQ(EncodeU64Key(0x0102030405060708ull),
            std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  uint64_t values[] = {
      0, 1, 255, 256, 65535, 1ull << 32, UINT64_MAX - 1, UINT64_MAX};
  for (size_t i = 0; i + 1 < std::size(values); ++i) {
    EXPECT_LT(EncodeU64Key(values[i]), EncodeU64Key(values[i + 1]));
  }
  for (uint64_t v : values) {
    Result<uint64_t> back = DecodeU64Key(EncodeU64Key(v));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, v);
  }
  Result<uint64_t> bad = DecodeU64Key("short");
  EXPECT_EQ(bad.status().kind(), ErrorKind::kCorruption);
  EXPECT_EQ(bad.status().message(), "u64 key: expected 8 bytes, got 5");
}

}  // namespace
}  // namespace cmkfs
