// Internal to cmkfs_vault_transport: conversions between keystore types and
// the protobuf messages, and between Status and grpc::Status.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <span>
#include <string>

#include "cmkfs/keystore.h"
#include "cmkvault.pb.h"

namespace cmkfs::vault::convert {

namespace pb = ::cmkvault::v1;

// Trailing metadata key carrying the cmkfs ErrorKind name.
inline constexpr char kKindKey[] = "cmkfs-kind";

grpc::StatusCode CodeOf(ErrorKind kind);
ErrorKind KindOf(std::string_view name);  // unknown name: kIOError

pb::VaultSpec ToPb(const keystore::VaultSpec& v);
Result<keystore::VaultSpec> FromPb(const pb::VaultSpec& v);
pb::Vault ToPb(const keystore::VaultInfo& v);
Result<keystore::VaultInfo> FromPb(const pb::Vault& v);
pb::KeyVersion ToPb(const keystore::KeyVersionInfo& v);
Result<keystore::KeyVersionInfo> FromPb(const pb::KeyVersion& v);
pb::Key ToPb(const keystore::KeyInfo& k);
Result<keystore::KeyInfo> FromPb(const pb::Key& k);
pb::RotationPolicy ToPb(const keystore::RotationPolicy& p);
keystore::RotationPolicy FromPb(const pb::RotationPolicy& p);
pb::AuditEvent ToPb(const keystore::AuditEntry& e);
keystore::AuditEntry FromPb(const pb::AuditEvent& e);
pb::WrapAlgorithm ToPb(keystore::WrapAlgorithm a);
keystore::WrapAlgorithm FromPb(pb::WrapAlgorithm a);

int64_t Seconds(TimePoint t);
TimePoint FromSeconds(int64_t s);

// The bytes of a protobuf bytes/string field, without a copy.
inline std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace cmkfs::vault::convert
