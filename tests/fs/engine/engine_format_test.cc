// The engine's format record (meta/"format"): its decoder and what Open does
// with a record it cannot read.
#include <gtest/gtest.h>

#include "cmkfs/lmdb.h"
#include "engine_test_support.h"
#include "records.h"

namespace cmkfs::fs::testing {
namespace {

TEST(FormatRecordTest, RoundTripsAndRefusesWhatItCannotRead) {
  std::string good = EncodeFormatRecord({});
  ASSERT_EQ(good.size(), 9u);
  ASSERT_OK_AND_ASSIGN(FormatRecord f, DecodeFormatRecord(good));
  EXPECT_EQ(f.version, kFormatVersion);
  EXPECT_EQ(f.extent_size, kExtentSize);
  EXPECT_EQ(f.sector_size, kSectorBytes);

  std::string newer = good;
  newer[0] = static_cast<char>(kFormatVersion + 1);
  EXPECT_EQ(DecodeFormatRecord(newer).status().kind(),
            ErrorKind::kNotSupported);
  EXPECT_HAS_SUBSTR(DecodeFormatRecord(newer).status().message(),
                    "this build reads version 1");
  for (std::string bad : {std::string(), good.substr(0, 5), good + "x",
                          std::string(1, '\0') + good.substr(1)}) {
    auto r = DecodeFormatRecord(bad);
    EXPECT_FALSE(r.ok()) << "accepted " << bad.size() << " bytes";
  }
  EXPECT_EQ(DecodeFormatRecord(good.substr(0, 5)).status().kind(),
            ErrorKind::kCorruption);
  EXPECT_EQ(
      DecodeFormatRecord(EncodeFormatRecord({1, 4096, 4096})).status().kind(),
      ErrorKind::kCorruption);
}

class EngineFormatTest : public EngineTest {};

TEST_F(EngineFormatTest, OpenRefusesANewerFormatVersion) {
  CloseEngine();
  {
    lmdb::EnvOptions eo;
    ASSERT_OK_AND_ASSIGN(auto env, lmdb::Env::Open(options_.dir / "meta", eo));
    ASSERT_OK_AND_ASSIGN(auto db, env->OpenDb("meta"));
    ASSERT_OK(env->Update([&](lmdb::Txn& txn) {
      return txn.Put(db, "format", EncodeFormatRecord({2, 65536, 4096}));
    }));
  }
  auto e = OpenWith(io_);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().kind(), ErrorKind::kNotSupported);
  EXPECT_HAS_SUBSTR(e.status().message(), options_.dir.string());
  EXPECT_HAS_SUBSTR(e.status().message(), "version 2");
}

}  // namespace
}  // namespace cmkfs::fs::testing
