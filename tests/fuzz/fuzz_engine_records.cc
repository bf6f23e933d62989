// Fuzzes the disk engine's LMDB record decoders (fs/engine/records.h) and the
// key ids stored inside them. The first byte selects the decoder. Invariants:
// no crash or sanitizer report, failures are Corruption (InvalidArgument for
// names and key ids, NotSupported for a format version this build does not
// read), and decoded records re-encode canonically.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cmkfs/keystore.h"
#include "cmkfs/record.h"
#include "fuzz_check.h"
#include "records.h"

namespace efs = cmkfs::fs;

namespace {

// Returns whether `text` parses as a key id.
bool KeyIdRoundTrip(std::string_view text) {
  auto id = cmkfs::keystore::KeyId::Parse(text);
  if (!id.ok()) return false;
  std::string printed = id->ToString();
  auto again = cmkfs::keystore::KeyId::Parse(printed);
  FUZZ_CHECK(again.ok(), "a printed key id does not parse");
  FUZZ_CHECK(again->ToString() == printed, "key id printing is not stable");
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0: {
      RoundTrip(value, efs::DecodeResource, efs::EncodeResource);
      auto r = efs::DecodeResource(value);
      if (r.ok()) {
        (void)KeyIdRoundTrip(r->key_id);
        (void)efs::ValidateName("disk", r->name);
      }
      break;
    }
    case 1: {
      RoundTrip(value, efs::DecodeDes, efs::EncodeDes);
      auto d = efs::DecodeDes(value);
      if (d.ok()) {
        (void)KeyIdRoundTrip(d->key_id);
        (void)KeyIdRoundTrip(d->previous_key_id);
        (void)KeyIdRoundTrip(d->rotation_target);
      }
      break;
    }
    case 2: {
      auto slot = efs::DecodeSlot(value);
      FuzzReport(slot.ok());
      if (slot.ok()) {
        FUZZ_CHECK(efs::EncodeSlot(*slot) == value, "slot not canonical");
      }
      break;
    }
    case 3: {
      auto n = efs::DecodeCount(value, "refcount");
      FuzzReport(n.ok());
      if (n.ok()) {
        FUZZ_CHECK(efs::EncodeCount(*n) == value, "count not canonical");
      } else {
        FUZZ_CHECK(n.status().kind() == cmkfs::ErrorKind::kCorruption,
                   "count failed with a kind other than Corruption");
      }
      break;
    }
    case 4: {
      // An extmap key: be64 rid + be64 extent index.
      if (value.size() == 16) {
        auto rid = cmkfs::DecodeU64Key(value.substr(0, 8));
        auto idx = cmkfs::DecodeU64Key(value.substr(8));
        FUZZ_CHECK(rid.ok() && idx.ok(), "16-byte map key rejected");
        FUZZ_CHECK(efs::MapKey(*rid, *idx) == value, "map key not canonical");
        FuzzReport(true);
      } else {
        FuzzReport(cmkfs::DecodeU64Key(value).ok());
      }
      break;
    }
    case 5: {
      // Accepted: a valid key id or a valid resource name.
      const bool key_id = KeyIdRoundTrip(value);
      auto st = efs::ValidateName("disk", value);
      FuzzReport(key_id || st.ok());
      if (st.ok()) {
        FUZZ_CHECK(value.find('/') == std::string_view::npos,
                   "a name with a slash was accepted");
        FUZZ_CHECK(value != "." && value != "..", "a dot name was accepted");
      }
      break;
    }
    case 6: {
      auto f = efs::DecodeFormatRecord(value);
      FuzzReport(f.ok());
      if (f.ok()) {
        FUZZ_CHECK(efs::EncodeFormatRecord(*f) == value,
                   "format record not canonical");
        FUZZ_CHECK(f->extent_size == efs::kExtentSize &&
                       f->sector_size == efs::kSectorBytes,
                   "format record with another geometry accepted");
      } else {
        FUZZ_CHECK(f.status().kind() == cmkfs::ErrorKind::kCorruption ||
                       f.status().kind() == cmkfs::ErrorKind::kNotSupported,
                   "format record failed with a kind other than Corruption "
                   "or NotSupported");
      }
      break;
    }
  }
  return 0;
}
