// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/):
// valid encodings of every record kind, so fuzzing starts from inputs that
// get past the first field. Usage: fuzz_seed_gen CORPUS_DIR
// The committed seeds were produced by this program; rerun it after a record
// format change (ctest fuzz.seeds_current fails until then). Each name ends
// in .ok (its decoder must accept it) or .bad (must refuse it): the replay
// (replay_main.cc) checks it.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/record.h"
#include "control_protocol.h"
#include "engine/records.h"
#include "fuzz_fixture.h"
#include "key_backend.h"
#include "keystore/records.h"

namespace fsys = std::filesystem;
namespace ks = cmkfs::keystore;
namespace efs = cmkfs::fs;

namespace {

fsys::path g_root;

void Put(const std::string& target, const std::string& name, char selector,
         std::string_view body) {
  fsys::create_directories(g_root / target);
  std::ofstream out(g_root / target / name, std::ios::binary | std::ios::trunc);
  out.put(selector);
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
}
void PutBytes(const std::string& target, const std::string& name, char selector,
              const std::vector<uint8_t>& body) {
  Put(target, name, selector,
      std::string_view(reinterpret_cast<const char*>(body.data()),
                       body.size()));
}

cmkfs::TimePoint T(int64_t s) {
  return cmkfs::TimePoint(std::chrono::seconds(s));
}

void KeystoreSeeds() {
  ks::VaultRecord v;
  v.info.spec.name = "vault1";
  v.info.spec.sku = ks::VaultSku::kPremium;
  v.info.spec.purge_protection = true;
  v.info.spec.retention_days = 7;
  v.info.admin_identity = "0f5e2d1c-admin";
  v.info.created = T(1700000000);
  v.info.policies = {{"id-1", 0x7ff}, {"id-2", 0x3}};
  Put("keystore_records", "vault.ok", 0, ks::EncodeVault(v));

  ks::KeyRecord k;
  k.bits = 3072;
  k.deleted = true;
  k.deleted_at = T(1700000100);
  k.scheduled_purge = T(1707776100);
  k.rotation_policy.rotate_after = std::chrono::hours(24 * 90);
  k.rotation_policy.notify_before = std::chrono::hours(24 * 7);
  k.last_rotation = T(1700000050);
  k.versions = {"aaaa", "bbbb", "cccc"};
  Put("keystore_records", "key.ok", 1, ks::EncodeKey(k));

  ks::VersionRecord ver;
  ver.bits = 2048;
  ver.expires = T(1800000000);
  ver.created = T(1700000000);
  ver.updated = T(1700000001);
  ver.stored.public_der = std::vector<uint8_t>(40, 0x30);
  ver.stored.material = std::vector<uint8_t>(60, 0x99);
  Put("keystore_records", "version.ok", 2, ks::EncodeVersion(ver));

  ks::AuditRecord a;
  a.entry.time = T(1700000002);
  a.entry.identity = "admin";
  a.entry.operation = "unwrapKey";
  a.entry.key_id = "cmk://vault1/keys/k1/aaaa";
  a.entry.result = "denied: no unwrapKey permission";
  a.key_name = "k1";
  Put("keystore_records", "audit.ok", 3, ks::EncodeAudit(a));

  ks::KdfRecord kdf;
  kdf.salt = std::vector<uint8_t>(16, 0xa5);
  Put("keystore_records", "kdf.ok", 4, ks::EncodeKdf(kdf));
  Put("keystore_records", "format.ok", 5, ks::EncodeFormat(ks::kFormatVersion));
  Put("keystore_records", "counter.ok", 6, ks::EncodeCounter(123456789));
}

void EngineSeeds() {
  efs::ResourceRecord r;
  r.rid = 7;
  r.name = "disk1";
  r.size = 1ull << 30;
  r.sku = efs::DiskSku::kUltraSsdLrs;
  r.encryption = efs::EncryptionType::kCustomer;
  r.des = "des1";
  r.key_id = "cmk://vault1/keys/k1/0123456789abcdef0123456789abcdef";
  r.identity = "3e1f-identity";
  r.wrapped_dek = std::vector<uint8_t>(256, 0xa5);
  r.uuid = "00000000-0000-4000-8000-000000000000";
  r.lineage = r.uuid;
  r.source = "snapshots/snap1";
  r.created = 1700000000;
  r.state = efs::ResourceState::kSealed;
  r.seal_reason = "key version disabled";
  Put("engine_records", "resource.ok", 0, efs::EncodeResource(r));
  r.kind = efs::ResourceKind::kSnapshot;
  r.state = efs::ResourceState::kActive;
  r.seal_reason.clear();
  Put("engine_records", "snapshot.ok", 0, efs::EncodeResource(r));

  efs::DesRecord d;
  d.name = "des1";
  d.key_id = "cmk://vault1/keys/k1/0123456789abcdef0123456789abcdef";
  d.auto_rotate = true;
  d.identity = "3e1f-identity";
  d.created = 1700000000;
  d.last_rotation = 1700000500;
  d.previous_key_id = "cmk://vault1/keys/k1/fedcba9876543210fedcba9876543210";
  d.rotation_target = "cmk://vault1/keys/k2/00ff00ff00ff00ff00ff00ff00ff00ff";
  Put("engine_records", "des.ok", 1, efs::EncodeDes(d));
  Put("engine_records", "slot.ok", 2, efs::EncodeSlot(12345));
  Put("engine_records", "count.ok", 3, efs::EncodeCount(3));
  Put("engine_records", "mapkey.ok", 4, efs::MapKey(7, 99));
  Put("engine_records", "keyid.ok", 5,
      "cmk://vault1/keys/k1/0123456789abcdef0123456789abcdef");
  Put("engine_records", "keyid_versionless.ok", 5, "cmk://vault1/keys/k1");
  Put("engine_records", "name.ok", 5, "my-disk_01.raw");
  Put("engine_records", "format.ok", 6, efs::EncodeFormatRecord({}));
}

void ControlSeeds() {
  auto req = cmkfs::cli::EncodeControlRequest(
      {"disk", "create", "d1", "--size", "64M", "-o", "json"});
  Put("control_protocol", "request.ok", 0, *req);
  auto empty = cmkfs::cli::EncodeControlRequest({});
  Put("control_protocol", "request_empty.ok", 0, *empty);
  cmkfs::cli::CommandOutput out;
  out.exit_code = 2;
  out.out = "{\"name\": \"d1\"}\n";
  out.err = "error: disk 'd1' already exists\n";
  Put("control_protocol", "reply.ok", 1, cmkfs::cli::EncodeControlReply(out));
  Put("control_protocol", "frame.ok", 2, cmkfs::cli::Frame(*req));
}

void KeySeeds() {
  // Private RSA keys import; a public key, an encrypted or a non-RSA key
  // is refused.
  const struct {
    const char* file;
    bool ok;
  } pems[] = {
      {"rsa2048_pkcs1.pem", true},   {"rsa2048_pkcs8.pem", true},
      {"rsa1024_pkcs8.pem", true},  // size checked at import, not here
      {"rsa2048_public.pem", false}, {"rsa2048_encrypted_pkcs8.pem", false},
      {"ec_p256_pkcs8.pem", false},  {"ed25519.pem", false}};
  for (const auto& p : pems) {
    std::string pem = cmkfs::fuzz::ReadFileOrDie(
        std::string(CMKFS_SOURCE_DIR) + "/tests/core/testdata/" + p.file);
    Put("pem", std::string(p.file) + (p.ok ? ".ok" : ".bad"), 0, pem);
  }
  cmkfs::crypto::RsaKey key = cmkfs::fuzz::FixtureRsaKey();
  auto der = key.PrivateDer();
  PutBytes("pem", "private_der.ok", 1,
           std::vector<uint8_t>(der->data(), der->data() + der->size()));
  PutBytes("pem", "public_der.ok", 2, *key.PublicDer());

  std::vector<uint8_t> dek(64, 0x5a);
  std::span<const uint8_t> label(
      reinterpret_cast<const uint8_t*>(cmkfs::fuzz::kDekLabel),
      sizeof(cmkfs::fuzz::kDekLabel) - 1);
  PutBytes("wrapped_dek", "wrapped_dek.ok", 0, *key.Wrap(dek, label));
  const std::vector<uint8_t> material = cmkfs::fuzz::FixtureSealedMaterial();
  PutBytes("wrapped_dek", "sealed_material.ok", 1, material);
  // The outer AEAD layer of the material (after its SlotRef header).
  PutBytes("wrapped_dek", "aead_blob.ok", 2,
           std::vector<uint8_t>(material.begin() + cmkfs::SlotRef::kEncodedSize,
                                material.end()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  KeystoreSeeds();
  EngineSeeds();
  ControlSeeds();
  KeySeeds();
  return 0;
}
