// The engine's catalog: resource and DES records in the metadata store, the
// rules on names, scope, quota and SKU, and the wrapping of DEKs through the
// keystore. It knows nothing of extents, open handles or locks.
//
// Thread-safety: every method may be called from any thread (the metadata
// store and the keystore are thread-safe), but a method that reads a record,
// changes it and writes it back (marked "read-modify-write") must be
// serialized by the caller against other writers of the same record: the
// engine holds its control lock for catalog-wide changes and the resource's
// lock (ResourceLocks) for one resource's record. Writes are one transaction
// each, synced (MetaStore::Sync) before the method returns.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cmkfs/crypto.h"
#include "cmkfs/engine.h"
#include "cmkfs/erase_slots.h"
#include "cmkfs/keystore.h"
#include "cmkfs/meta_store.h"
#include "cmkfs/status.h"
#include "records.h"

namespace cmkfs::fs {

// The system vault's key that wraps platform-managed DEKs.
inline constexpr char kPlatformKeyName[] = "platform";

// "disk NAME", "snapshot NAME", "image NAME" (error messages).
std::string Describe(ResourceKind kind, std::string_view name);
// A random object id in the 8-4-4-4-12 hex form (identities, uuids).
Result<std::string> NewObjectId();
// Every size a disk gets (create, clone, import, resize) passes here: OK for
// a multiple of 4096 bytes from `min` to `max` (capped at kMaxMaxDiskSize);
// otherwise InvalidArgument naming `what` and the accepted range.
Status CheckDiskSize(std::string_view what, uint64_t size, uint64_t min,
                     uint64_t max);
int64_t NowSeconds();
TimePoint FromSeconds(int64_t s);
// Same vault and key name, whatever the versions.
bool SameKey(const keystore::KeyId& a, const keystore::KeyId& b);
// Takes the next resource id from meta/"next_rid" in its own transaction,
// committed without a Sync: it becomes durable with the record that uses it.
Result<uint64_t> NextRid(MetaStore& meta_store, MetaTable meta);

// The tables the catalog reads and writes (opened by the engine).
struct CatalogTables {
  MetaTable meta = 0;       // "meta": next_rid
  MetaTable resources = 0;  // "resources": ResourceKey -> ResourceRecord
  MetaTable des = 0;        // "des": name -> DesRecord
};

// What a re-wrap needs from the engine.
struct RewrapHooks {
  // Runs `step` holding (kind, name) against the engine's other changes of
  // that resource, and returns its status.
  std::function<Status(ResourceKind kind, std::string_view name,
                       const std::function<Status()>& step)>
      hold;
  // The DEK of `r` (from memory when it is open, else unwrapped).
  std::function<Result<crypto::SecretBytes>(const ResourceRecord& r)> dek;
};

class Catalog {
 public:
  // `ks` and `meta` must outlive the catalog; `slots` holds the erase slots
  // of the wrapped DEKs (DIR/meta/erase-slots).
  Catalog(const EngineOptions& options, keystore::KeyStore* ks, MetaStore* meta,
          CatalogTables tables, std::unique_ptr<EraseSlotFile> slots);

  // --- records ---------------------------------------------------------------
  // NotFound ("disk NAME not found"), Corruption for an undecodable record.
  Result<ResourceRecord> LoadResource(ResourceKind kind,
                                      std::string_view name) const;
  // NotFound ("disk encryption set NAME not found"), Corruption.
  Result<DesRecord> LoadDes(std::string_view name) const;
  // Writes the record (one transaction) and syncs.
  Status PutResource(const ResourceRecord& r);
  Status PutDes(const DesRecord& d);
  // The records of one kind in name order (a consistent snapshot).
  Result<std::vector<ResourceRecord>> ListResources(ResourceKind kind) const;
  // Every resource record, all kinds.
  Result<std::vector<ResourceRecord>> AllResources() const;
  Result<std::vector<DesRecord>> AllDes() const;
  // Where each resource's DEK is wrapped (the key watcher's view).
  Result<std::vector<KeyUse>> KeyUses() const;

  // --- names and scope -------------------------------------------------------
  // Empty scope fields take the engine's defaults.
  Scope FillScope(Scope s) const;
  // "disks/N", "snapshots/N", "images/N" or a bare name that exists as
  // exactly one accepted kind. A disk is made from a snapshot or image; an
  // image (`for_image`) from a disk or snapshot. InvalidArgument for a kind
  // not accepted or an ambiguous name, NotFound; both list what is accepted.
  Result<std::pair<ResourceKind, std::string>> ResolveSource(
      std::string_view source, bool for_image) const;
  static DesInfo ToDesInfo(const DesRecord& d);

  // --- disk encryption sets (read-modify-write: control lock) ---------------
  // Checks the name, purge protection, scope (the vault's subscription and
  // region) and the per-region quota; creates the identity and writes the
  // record. AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
  // (vault, key).
  Result<DesRecord> CreateDes(const DesSpec& spec);
  // Sets auto-rotation and/or points the DES at a new key version; then
  // re-wraps its resources (RewrapDes) after writing the rotation marker.
  // A retry of an unfinished rotation resumes it.
  Result<DesRecord> UpdateDes(std::string_view name,
                              std::optional<keystore::KeyId> key_id,
                              std::optional<bool> auto_rotate,
                              const RewrapHooks& hooks);
  // Re-wraps the DEK of every resource of `d` not yet under
  // d.rotation_target, one resource per synced transaction, each inside
  // hooks.hold; then clears the marker. On a failure the marker stays (a
  // later UpdateDes or Open resumes), d.rotation_error says why, and the
  // first error is returned.
  Status RewrapDes(DesRecord& d, const RewrapHooks& hooks);
  // Empty `error` clears it. NotFound.
  Status SetDesRotationError(std::string_view name, std::string_view error);
  // FailedPrecondition (listing up to 5 users) while a resource uses it.
  Status DeleteDes(std::string_view name);

  // --- resources
  // --------------------------------------------------------------- A new,
  // empty disk from `spec` (no source): size, scope, guest-encryption and DES
  // rules; a new DEK wrapped by the DES's or the platform key. The caller
  // checked the name and that it is free. Control lock.
  Result<ResourceRecord> CreateDisk(const DiskSpec& spec);
  // Rules of a grow: InvalidArgument unless `new_size` is larger (and
  // aligned, at most the largest disk).
  Status CheckGrow(const ResourceRecord& r, uint64_t new_size) const;
  // Moves a platform-key disk to another resource group (and subscription);
  // FailedPrecondition for a customer-key disk. Read-modify-write of `r`.
  Status Move(ResourceRecord& r, std::string_view resource_group,
              const std::optional<std::string>& subscription);
  // Re-wraps `r`'s DEK (from `dek`) under the DES's key and records the DES.
  // No-op when already there. Read-modify-write of `r`, control lock (the
  // DES must not rotate meanwhile).
  Status SetDiskDes(
      ResourceRecord& r, std::string_view des,
      const std::function<Result<crypto::SecretBytes>(const ResourceRecord&)>&
          dek);

  // --- keys
  // --------------------------------------------------------------------
  // Creates the system vault and its platform key unless they exist.
  Status EnsureSystemKey();
  // The versioned id of `id` (the latest enabled version when versionless),
  // read as `caller` ("" = the host's own identity).
  Result<keystore::KeyId> ResolveKeyVersion(const keystore::KeyId& id,
                                            std::string_view caller = "");
  // Who reads the key versions of `d`'s key: the host itself in embedded
  // mode; in service mode (options.mint_des_identity set) the host identity
  // has no key permission, so the DES's own identity does.
  std::string KeyReaderOf(const DesRecord& d) const;
  // LoadDes, with the key version resolved (and recorded) if the set was
  // created before its identity could read the key (service mode, before the
  // vault owner's grant). For every use that wraps under the set's key.
  Result<DesRecord> LoadDesForUse(std::string_view name);
  // PermissionDenied (naming the missing permissions and the command that
  // grants them) unless the DES's identity may get/wrap/unwrap with `key`.
  Status CheckDesAccess(const DesRecord& d, const keystore::KeyId& key);
  // The DEK wrapped by `key` for `identity`, labelled with `uuid`, then
  // sealed under a fresh erase slot (docs/format.md, "Wrapped DEKs"): what a
  // resource record stores. The slot is durable before this returns; if no
  // record ever names it, SweepEraseSlots erases it.
  Result<std::vector<uint8_t>> WrapDek(const crypto::SecretBytes& dek,
                                       const std::string& identity,
                                       const keystore::KeyId& key,
                                       const std::string& uuid);
  // Erases the slot of `wrapped_dek`, which no durable record names any more
  // (the record that dropped or replaced it is synced), so no stale copy of
  // it opens. A wrapped DEK from before erase slots has none: Ok. A failure
  // is logged; the next SweepEraseSlots erases the slot.
  void ReleaseWrappedDek(std::span<const uint8_t> wrapped_dek);
  // Why `wrapped_dek` no longer opens for want of its erase slot (erased, or
  // holding another record's secret), for fsck; nullopt when the slot is
  // there or the blob has none.
  std::optional<std::string> WrappedDekProblem(
      std::span<const uint8_t> wrapped_dek) const;
  // Erases every slot that no resource record names: what a crash between a
  // commit and its release, or a create that failed after WrapDek, left. At
  // open, before any WrapDek. Erases nothing (a warning) while a resource
  // record does not decode, since it may name a slot.
  Status SweepEraseSlots();
  // The resource's DEK; the keystore's error (KeyUnavailable,
  // PermissionDenied, ...) with the resource named, Corruption for a DEK
  // of the wrong length.
  Result<crypto::SecretBytes> UnwrapDek(const ResourceRecord& r);
  // A random XTS key whose two halves differ.
  static Result<crypto::SecretBytes> NewDek();

 private:
  EngineOptions options_;
  keystore::KeyStore* ks_;
  MetaStore* meta_;
  CatalogTables t_;
  std::unique_ptr<EraseSlotFile> slots_;
};

}  // namespace cmkfs::fs
