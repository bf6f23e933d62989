// EraseSlotFile: slots are handed out once, read back, erased in place on
// disk, reused once erased, never erased by a stale reference once reused,
// and never handed out twice by threads or instances allocating at once.
#include "cmkfs/erase_slots.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

namespace cmkfs {
namespace {

// A temporary directory, removed with what it holds.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/cmkfs-erase-slots-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::vector<uint8_t> ReadFileBytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::unique_ptr<EraseSlotFile> OpenOrDie(const std::filesystem::path& p) {
  auto f = EraseSlotFile::Open(p);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(*f) : nullptr;
}

std::vector<uint8_t> SlotBytes(const std::filesystem::path& p, uint32_t slot) {
  auto bytes = ReadFileBytes(p);
  const size_t at = size_t{slot} * EraseSlotFile::kSecretSize;
  if (bytes.size() < at + EraseSlotFile::kSecretSize) return {};
  return {bytes.begin() + at, bytes.begin() + at + EraseSlotFile::kSecretSize};
}

TEST(EraseSlotFileTest, AllocatedSecretsReadBackAndAreOnDisk) {
  TempDir tmp;
  const auto path = tmp.path() / "erase-slots";
  auto slots = OpenOrDie(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  crypto::SecretBytes a, b;
  auto sa = slots->Allocate(&a);
  auto sb = slots->Allocate(&b);
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_NE(*sa, *sb);
  EXPECT_EQ(a.size(), EraseSlotFile::kSecretSize);
  EXPECT_FALSE(std::equal(a.span().begin(), a.span().end(), b.span().begin()));
  auto again = slots->Read(*sa);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(std::ranges::equal(again->span(), a.span()));
  // Durable in the file itself, and readable by a second instance.
  EXPECT_TRUE(std::ranges::equal(SlotBytes(path, *sb), b.span()));
  auto other = OpenOrDie(path);
  EXPECT_TRUE(std::ranges::equal(other->Read(*sb)->span(), b.span()));
}

TEST(EraseSlotFileTest, EraseOverwritesTheSlotInPlaceAndItIsReused) {
  TempDir tmp;
  const auto path = tmp.path() / "erase-slots";
  auto slots = OpenOrDie(path);
  crypto::SecretBytes a, b, c;
  const uint32_t sa = *slots->Allocate(&a);
  const uint32_t sb = *slots->Allocate(&b);
  ASSERT_TRUE(slots->Erase(sa).ok());
  EXPECT_EQ(SlotBytes(path, sa), std::vector<uint8_t>(32, 0));
  EXPECT_TRUE(std::ranges::equal(SlotBytes(path, sb), b.span()));
  EXPECT_EQ(slots->Read(sa).status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(*slots->UsedSlots(), std::vector<uint32_t>{sb});
  EXPECT_TRUE(slots->Erase(sa).ok());    // again: nothing to do
  EXPECT_TRUE(slots->Erase(1000).ok());  // past the end
  EXPECT_EQ(slots->Read(1000).status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(*slots->Allocate(&c), sa);  // the erased slot, not a new one
  EXPECT_EQ(ReadFileBytes(path).size(), 2 * EraseSlotFile::kSecretSize);
}

TEST(EraseSlotFileTest, AnEraseByFingerprintNeverHitsAReusedSlot) {
  TempDir tmp;
  const auto path = tmp.path() / "erase-slots";
  auto slots = OpenOrDie(path);
  crypto::SecretBytes a, b;
  const uint32_t sa = *slots->Allocate(&a);
  const SlotRef ref_a = SlotRef::Of(sa, a);
  ASSERT_TRUE(slots->Erase(ref_a).ok());
  EXPECT_EQ(slots->Read(sa).status().kind(), ErrorKind::kNotFound);
  ASSERT_EQ(*slots->Allocate(&b), sa);    // reused by another record
  ASSERT_TRUE(slots->Erase(ref_a).ok());  // late and repeated: a no-op
  auto still = slots->Read(sa);
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(std::ranges::equal(still->span(), b.span()));
  // The header round-trips and names its format.
  const std::vector<uint8_t> header = ref_a.Encode("TEST");
  ASSERT_EQ(header.size(), SlotRef::kEncodedSize);
  auto back = SlotRef::Decode("TEST", header);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->slot, sa);
  EXPECT_EQ(back->fingerprint, ref_a.fingerprint);
  EXPECT_FALSE(SlotRef::Decode("OTHR", header).has_value());
  EXPECT_FALSE(
      SlotRef::Decode("TEST", std::span(header).first(header.size() - 1))
          .has_value());
}

TEST(EraseSlotFileTest, ConcurrentAllocationsNeverShareASlot) {
  TempDir tmp;
  const auto path = tmp.path() / "erase-slots";
  auto first = OpenOrDie(path);
  auto second = OpenOrDie(path);  // flock is per open file: like 2 processes
  std::vector<uint32_t> got[3];
  auto run = [&](EraseSlotFile* f, std::vector<uint32_t>* out) {
    for (int i = 0; i < 50; ++i) {
      crypto::SecretBytes s;
      auto slot = f->Allocate(&s);
      ASSERT_TRUE(slot.ok());
      out->push_back(*slot);
    }
  };
  std::thread t1(run, first.get(), &got[0]);
  std::thread t2(run, second.get(), &got[1]);
  std::thread t3(run, first.get(), &got[2]);  // two threads, one instance
  t1.join();
  t2.join();
  t3.join();
  std::set<uint32_t> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  all.insert(got[2].begin(), got[2].end());
  EXPECT_EQ(all.size(), 150u);
}

TEST(EraseSlotFileTest, RefusesAFileThatIsNotWholeSlotsOrIsShared) {
  TempDir tmp;
  const auto path = tmp.path() / "erase-slots";
  {
    std::ofstream out(path, std::ios::binary);
    out << "short";
  }
  ::chmod(path.c_str(), 0600);
  auto bad = EraseSlotFile::Open(path);
  EXPECT_EQ(bad.status().kind(), ErrorKind::kCorruption);
  EXPECT_NE(bad.status().message().find("not a whole number of 32-byte slots"),
            std::string::npos)
      << bad.status().ToString();
  std::filesystem::resize_file(path, 32);
  ::chmod(path.c_str(), 0644);
  auto shared = EraseSlotFile::Open(path);
  EXPECT_FALSE(shared.ok());
  EXPECT_NE(shared.status().message().find(path.string()), std::string::npos)
      << shared.status().ToString();
}

}  // namespace
}  // namespace cmkfs
