// dek_probe: prints the DEK of one resource as hex, for the key-hygiene test
// (which must know the key it searches the daemon's memory for). It reads the
// resource record from the engine's LMDB and unwraps the DEK through the
// keystore (opening the erase-slot seal first) exactly as the engine does,
// so no test-only hook in the product is needed. Run it only while no daemon
// holds the state directory.
//   dek_probe STATE_DIR KIND NAME      (KIND: disk|snapshot|image)
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "cmkfs/config.h"
#include "cmkfs/crypto.h"
#include "cmkfs/erase_slots.h"
#include "cmkfs/keystore.h"
#include "cmkfs/lmdb.h"
#include "records.h"

using namespace cmkfs;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: dek_probe STATE_DIR disk|snapshot|image NAME\n");
    return 2;
  }
  Config config;
  config.state_dir = argv[1];
  config.ResolveDefaults();
  std::string kind_name = argv[2];
  fs::ResourceKind kind = kind_name == "snapshot" ? fs::ResourceKind::kSnapshot
                          : kind_name == "image"  ? fs::ResourceKind::kImage
                                                  : fs::ResourceKind::kDisk;
  auto fail = [](const std::string& what, const Status& s) {
    std::fprintf(stderr, "dek_probe: %s: %s\n", what.c_str(),
                 s.ToString().c_str());
    return 1;
  };

  lmdb::EnvOptions eo;
  eo.max_dbs = 16;
  auto env = lmdb::Env::Open(config.state_dir / "meta", eo);
  if (!env.ok()) return fail("open engine metadata", env.status());
  auto dbi = (*env)->OpenDb("resources");
  if (!dbi.ok()) return fail("open resources db", dbi.status());
  fs::ResourceRecord rec;
  Status st = (*env)->View([&](lmdb::Txn& txn) -> Status {
    auto v = txn.Get(*dbi, fs::ResourceKey(kind, argv[3]));
    if (!v.ok()) return v.status();
    auto r = fs::DecodeResource(*v);
    if (!r.ok()) return r.status();
    rec = std::move(*r);
    return Status::Ok();
  });
  if (!st.ok()) return fail("read resource record", st);
  env->reset();

  keystore::KeyStoreOptions ko;
  ko.dir = config.keystore.dir;
  ko.master_key_file = config.keystore.master_key_file;
  auto ks = keystore::OpenKeyStore(ko);
  if (!ks.ok()) return fail("open keystore", ks.status());
  auto key_id = keystore::KeyId::Parse(rec.key_id);
  if (!key_id.ok()) return fail("key id", key_id.status());
  std::string label = "cmkfs-dek:" + rec.uuid;
  const std::span<const uint8_t> label_bytes(
      reinterpret_cast<const uint8_t*>(label.data()), label.size());
  // The keystore's blob is sealed under the record's erase slot
  // (docs/format.md, "Wrapped DEKs and erase slots").
  std::vector<uint8_t> blob = rec.wrapped_dek;
  if (auto ref = SlotRef::Decode("CKD2", rec.wrapped_dek)) {
    auto slots = EraseSlotFile::Open(config.state_dir / "meta" / "erase-slots");
    if (!slots.ok()) return fail("open erase slots", slots.status());
    auto secret = (*slots)->Read(ref->slot);
    if (!secret.ok()) return fail("read erase slot", secret.status());
    auto opened = crypto::AeadOpen(
        *secret, std::span(rec.wrapped_dek).subspan(SlotRef::kEncodedSize),
        label_bytes);
    if (!opened.ok()) return fail("open the erase-slot seal", opened.status());
    blob.assign(opened->span().begin(), opened->span().end());
  }
  auto dek = (*ks)->UnwrapKey(rec.identity, *key_id, blob, label_bytes);
  if (!dek.ok()) return fail("unwrap", dek.status());
  std::printf("%s\n", crypto::HexEncode(dek->span()).c_str());
  return 0;
}
