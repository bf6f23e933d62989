// cmkctl des ..., disk ..., snapshot ..., image ..., fsck, stats.
#include <unistd.h>

#include <cstdio>

#include "cmkfs/engine.h"
#include "cmkfs/units.h"
#include "command_support.h"

namespace cmkfs::cli {
namespace {

using fs::ResourceKind;

Json KeyIdJson(const keystore::KeyId& id) {
  return id.vault.empty() ? Json(nullptr) : Json(id.ToString());
}

void SetScope(Json& j, const fs::Scope& scope) {
  j["subscription"] = scope.subscription;
  j["resource_group"] = scope.resource_group;
  j["region"] = scope.region;
}

Json DesJson(const fs::DesInfo& d) {
  Json j = Json::object();
  j["name"] = d.name;
  j["key_id"] = KeyIdJson(d.key_id);
  j["identity"] = d.identity;
  j["auto_rotate"] = d.auto_rotate;
  j["last_rotation"] = TimeJson(d.last_rotation);
  j["rotation_error"] = StringOrNull(d.rotation_error);
  j["previous_key_id"] =
      d.previous_key_id ? KeyIdJson(*d.previous_key_id) : Json(nullptr);
  j["encryption_type"] = d.encryption_type;
  SetScope(j, d.scope);
  Json scope = Json::object();
  SetScope(scope, d.scope);
  j["scope"] = std::move(scope);
  j["created"] = TimeJson(d.created);
  return j;
}

Json ResourceJson(const fs::ResourceInfo& r) {
  Json j = Json::object();
  j["name"] = r.name;
  j["kind"] = fs::ResourceKindName(r.kind);
  j["size"] = r.size;
  j["sku"] = fs::DiskSkuName(r.sku);
  j["encryption"] = fs::EncryptionTypeName(r.encryption);
  j["des"] = StringOrNull(r.des);
  j["key_id"] = KeyIdJson(r.key_id);
  j["state"] = r.state == fs::ResourceState::kSealed ? "sealed" : "active";
  j["seal_reason"] = StringOrNull(r.seal_reason);
  j["source"] = StringOrNull(r.source);
  SetScope(j, r.scope);
  j["allocated_bytes"] = r.allocated_bytes;
  j["guest_encrypted"] = r.guest_encrypted;
  j["open_handles"] = r.open_handles;
  j["created"] = TimeJson(r.created);
  return j;
}

const std::vector<Column> kResourceColumns = {
    {"NAME", "name"},     {"SIZE", "size"},
    {"SKU", "sku"},       {"ENCRYPTION", "encryption"},
    {"DES", "des"},       {"STATE", "state"},
    {"SOURCE", "source"},
};

// When a customer-key operation fails because the DES identity cannot use
// its key, the message names the exact command that grants access.
Status WithGrantHint(Invocation& inv, Status s, std::string_view des) {
  if (s.ok() || des.empty()) return s;
  // Not FailedPrecondition: those refusals (guest-encrypted, purge
  // protection, a source on another key) are not fixed by a grant.
  if (s.kind() != ErrorKind::kPermissionDenied &&
      s.kind() != ErrorKind::kKeyUnavailable) {
    return s;
  }
  if (s.message().find("set-policy") != std::string::npos) return s;
  auto info = inv.ctx->engine->GetDes(des);
  if (!info.ok()) return s;
  return Status(s.kind(), s.message() +
                              "; grant the disk encryption set's identity "
                              "access with: cmkctl vault set-policy " +
                              info->key_id.vault + " --object-id " +
                              info->identity +
                              " --key-permissions get wrapKey unwrapKey");
}

// --- des
// -----------------------------------------------------------------------

Result<keystore::KeyId> KeyIdFlag(Invocation& inv) {
  auto text = inv.Value("--key-id");
  auto id = keystore::KeyId::Parse(*text);
  if (!id.ok()) return inv.Usage("--key-id: " + id.status().message());
  return *id;
}

Status DesCreate(Invocation& inv) {
  if (!inv.Has("--key-id")) {
    return inv.Usage(
        "'des create' needs --key-id KEYID (cmk://VAULT/keys/NAME[/VERSION])");
  }
  fs::DesSpec spec;
  spec.name = inv.positional[0];
  CMKFS_ASSIGN_OR_RETURN(spec.key_id, KeyIdFlag(inv));
  if (inv.Has("--auto-rotate")) {
    CMKFS_ASSIGN_OR_RETURN(spec.auto_rotate, BoolFlag(inv, "--auto-rotate"));
  }
  spec.scope = inv.NewScope();
  CMKFS_ASSIGN_OR_RETURN(auto info, inv.ctx->engine->CreateDes(spec));
  if (inv.document()) {
    PrintDocument(inv, DesJson(info));
  } else {
    PrintLine(inv, info.identity);
  }
  return Status::Ok();
}

Status DesUpdate(Invocation& inv) {
  std::optional<keystore::KeyId> key_id;
  std::optional<bool> auto_rotate;
  if (inv.Has("--key-id")) {
    CMKFS_ASSIGN_OR_RETURN(key_id, KeyIdFlag(inv));
  }
  if (inv.Has("--auto-rotate")) {
    CMKFS_ASSIGN_OR_RETURN(auto_rotate, BoolFlag(inv, "--auto-rotate"));
  }
  if (!key_id && !auto_rotate) {
    return inv.Usage(
        "'des update' needs --key-id KEYID and/or --auto-rotate "
        "true|false");
  }
  auto info =
      inv.ctx->engine->UpdateDes(inv.positional[0], key_id, auto_rotate);
  if (key_id) {
    // A refused update leaves the set as it was: record it as it is now.
    const Result<fs::DesInfo> now =
        info.ok() ? info : inv.ctx->engine->GetDes(inv.positional[0]);
    AuditOnHost(inv, "des.update-key", now.ok() ? now->identity : "",
                now.ok() ? now->key_id : *key_id, info.status(),
                "disk encryption set " + inv.positional[0] + " to key " +
                    key_id->ToString());
  }
  if (!info.ok()) {
    return WithGrantHint(inv, info.status(), inv.positional[0]);
  }
  Emit(inv, DesJson(*info));
  return Status::Ok();
}

Status DesShow(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto info, inv.ctx->engine->GetDes(inv.positional[0]));
  Emit(inv, DesJson(info));
  return Status::Ok();
}

Status DesList(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto list, inv.ctx->engine->ListDes());
  Json arr = Json::array();
  for (const auto& d : list) arr.push_back(DesJson(d));
  EmitList(inv, arr,
           {{"NAME", "name"},
            {"KEY_ID", "key_id"},
            {"AUTO_ROTATE", "auto_rotate"},
            {"IDENTITY", "identity"},
            {"ROTATION_ERROR", "rotation_error"}});
  return Status::Ok();
}

Status DesDelete(Invocation& inv) {
  CMKFS_RETURN_IF_ERROR(inv.ctx->engine->DeleteDes(inv.positional[0]));
  if (inv.document()) {
    Json j = Json::object();
    j["name"] = inv.positional[0];
    j["deleted"] = true;
    PrintDocument(inv, j);
  } else {
    PrintLine(inv, "disk encryption set " + inv.positional[0] + " deleted");
  }
  return Status::Ok();
}

// --- progress
// ------------------------------------------------------------------

// Draws a bar on stderr when on a TTY; otherwise remembers the totals for
// one final line.
class ProgressReporter {
 public:
  ProgressReporter(Invocation& inv, std::string verb)
      : inv_(inv), verb_(std::move(verb)) {
    progress_.cancel = inv.ctx->cancel;
    progress_.on_progress = [this](uint64_t done, uint64_t total) {
      done_ = done;
      total_ = total;
      if (!inv_.ctx->progress_on_tty) return;
      int percent = total ? static_cast<int>(done * 100 / total) : 100;
      if (percent == last_percent_) return;
      last_percent_ = percent;
      constexpr int kWidth = 30;
      int filled = percent * kWidth / 100;
      std::fprintf(
          stderr, "\r%s [%s%s] %3d%% %s / %s", verb_.c_str(),
          std::string(static_cast<size_t>(filled), '#').c_str(),
          std::string(static_cast<size_t>(kWidth - filled), ' ').c_str(),
          percent, FormatSize(done).c_str(), FormatSize(total).c_str());
      std::fflush(stderr);
      drawn_ = true;
    };
  }
  const fs::Progress& progress() const { return progress_; }

  // Ends the bar, or adds the one summary line to stderr.
  void Finish(bool ok, std::string_view what) {
    if (drawn_) {
      std::fprintf(stderr, "\n");
      std::fflush(stderr);
    }
    if (ok && !inv_.ctx->progress_on_tty) {
      inv_.output.err += verb_ + " " + FormatSize(total_ ? total_ : done_) +
                         " " + std::string(what) + "\n";
    }
  }

 private:
  Invocation& inv_;
  std::string verb_;
  fs::Progress progress_;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
  int last_percent_ = -1;
  bool drawn_ = false;
};

// --- disk
// ----------------------------------------------------------------------

std::string AbsolutePath(const std::string& p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.string();
}

// AuditOnHost for resource `name` of `kind`, as the DES it uses now (or the
// platform key).
void AuditResourceOnHost(Invocation& inv, std::string_view operation,
                         ResourceKind kind, const std::string& name,
                         const Status& result, const std::string& subject) {
  auto info = inv.ctx->engine->Get(kind, name);
  std::string identity;
  keystore::KeyId key;
  if (info.ok()) {
    key = info->key_id;
    if (!info->des.empty()) {
      auto des = inv.ctx->engine->GetDes(info->des);
      if (des.ok()) identity = des->identity;
    }
  }
  AuditOnHost(inv, operation, identity, key, result, subject);
}

Status DiskCreate(Invocation& inv) {
  fs::DiskSpec spec;
  spec.name = inv.positional[0];
  auto import = inv.Value("--import");
  auto source = inv.Value("--source");
  if (import && source) {
    return inv.Usage("'disk create' takes --source or --import, not both");
  }
  if (inv.Has("--size")) {
    CMKFS_ASSIGN_OR_RETURN(spec.size, SizeFlag(inv, "--size"));
  } else if (!import && !source) {
    return inv.Usage(
        "'disk create' needs --size SIZE (e.g. 64M, 10G), or --source "
        "SNAPSHOT_OR_IMAGE, or --import FILE");
  }
  if (auto sku = inv.Value("--sku")) {
    auto parsed = fs::ParseDiskSku(*sku);
    if (!parsed.ok()) return inv.Usage("--sku: " + parsed.status().message());
    spec.sku = *parsed;
  }
  spec.des = inv.Value("--des").value_or("");
  spec.source = source.value_or("");
  if (inv.Has("--guest-encrypted")) {
    CMKFS_ASSIGN_OR_RETURN(spec.guest_encrypted,
                           BoolFlag(inv, "--guest-encrypted"));
  }
  spec.scope = inv.NewScope();
  Result<fs::ResourceInfo> info = Status();
  if (import) {
    std::string file = AbsolutePath(*import);
    ProgressReporter reporter(inv, "imported");
    info = inv.ctx->engine->ImportDisk(spec, file, reporter.progress());
    reporter.Finish(info.ok(), "from " + file + " into disk " + spec.name);
  } else {
    info = inv.ctx->engine->CreateDisk(spec);
    if (source) {
      AuditResourceOnHost(inv, "disk.create-from-source", ResourceKind::kDisk,
                          spec.name, info.status(),
                          "disk " + spec.name + " from " + *source);
    }
  }
  if (!info.ok()) return WithGrantHint(inv, info.status(), spec.des);
  Emit(inv, ResourceJson(*info));
  return Status::Ok();
}

Status DiskUpdate(Invocation& inv) {
  auto des = inv.Value("--des");
  if (!des) return inv.Usage("'disk update' needs --des DES");
  auto info = inv.ctx->engine->SetDiskDes(inv.positional[0], *des);
  AuditResourceOnHost(
      inv, "disk.update-des", ResourceKind::kDisk, inv.positional[0],
      info.status(),
      "disk " + inv.positional[0] + " to disk encryption set " + *des);
  if (!info.ok()) return WithGrantHint(inv, info.status(), *des);
  Emit(inv, ResourceJson(*info));
  return Status::Ok();
}

Status DiskResize(Invocation& inv) {
  if (!inv.Has("--size")) return inv.Usage("'disk resize' needs --size SIZE");
  CMKFS_ASSIGN_OR_RETURN(uint64_t size, SizeFlag(inv, "--size"));
  CMKFS_ASSIGN_OR_RETURN(auto info,
                         inv.ctx->engine->Resize(inv.positional[0], size));
  Emit(inv, ResourceJson(info));
  return Status::Ok();
}

Status DiskMove(Invocation& inv) {
  // --resource-group / --subscription are global flags; for 'disk move'
  // they name the target.
  if (!inv.globals.resource_group) {
    return inv.Usage("'disk move' needs --resource-group RG (the target)");
  }
  CMKFS_ASSIGN_OR_RETURN(
      auto info,
      inv.ctx->engine->Move(inv.positional[0], *inv.globals.resource_group,
                            inv.globals.subscription));
  Emit(inv, ResourceJson(info));
  return Status::Ok();
}

template <ResourceKind kKind>
Status ResourceShow(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto info,
                         inv.ctx->engine->Get(kKind, inv.positional[0]));
  Emit(inv, ResourceJson(info));
  return Status::Ok();
}

template <ResourceKind kKind>
Status ResourceList(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto list, inv.ctx->engine->List(kKind));
  Json arr = Json::array();
  for (const auto& r : list) arr.push_back(ResourceJson(r));
  EmitList(inv, arr, kResourceColumns);
  return Status::Ok();
}

template <ResourceKind kKind>
Status ResourceDelete(Invocation& inv) {
  CMKFS_RETURN_IF_ERROR(inv.ctx->engine->Delete(kKind, inv.positional[0]));
  if (inv.document()) {
    Json j = Json::object();
    j["name"] = inv.positional[0];
    j["kind"] = fs::ResourceKindName(kKind);
    j["deleted"] = true;
    PrintDocument(inv, j);
  } else {
    PrintLine(inv, std::string(fs::ResourceKindName(kKind)) + " " +
                       inv.positional[0] + " deleted");
  }
  return Status::Ok();
}

template <ResourceKind kKind>
Status ResourceExport(Invocation& inv) {
  std::string file = AbsolutePath(inv.positional[1]);
  ProgressReporter reporter(inv, "exported");
  Status s = inv.ctx->engine->Export(kKind, inv.positional[0], file,
                                     reporter.progress());
  AuditResourceOnHost(inv, std::string(fs::ResourceKindName(kKind)) + ".export",
                      kKind, inv.positional[0], s,
                      std::string(fs::ResourceKindName(kKind)) + " " +
                          inv.positional[0] + " to " + file);
  reporter.Finish(s.ok(), "from " + std::string(fs::ResourceKindName(kKind)) +
                              " " + inv.positional[0] + " to " + file);
  CMKFS_RETURN_IF_ERROR(s);
  if (inv.document()) {
    Json j = Json::object();
    j["name"] = inv.positional[0];
    j["kind"] = fs::ResourceKindName(kKind);
    j["file"] = file;
    PrintDocument(inv, j);
  }
  return Status::Ok();
}

Status SnapshotCreate(Invocation& inv) {
  auto source = inv.Value("--source");
  if (!source) return inv.Usage("'snapshot create' needs --source DISK");
  CMKFS_ASSIGN_OR_RETURN(
      auto info, inv.ctx->engine->CreateSnapshot(inv.positional[0], *source));
  Emit(inv, ResourceJson(info));
  return Status::Ok();
}

Status ImageCreate(Invocation& inv) {
  auto source = inv.Value("--source");
  if (!source) {
    return inv.Usage("'image create' needs --source DISK_OR_SNAPSHOT");
  }
  CMKFS_ASSIGN_OR_RETURN(
      auto info, inv.ctx->engine->CreateImage(inv.positional[0], *source));
  Emit(inv, ResourceJson(info));
  return Status::Ok();
}

Status Fsck(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto report, inv.ctx->engine->Fsck());
  if (inv.document()) {
    Json j = Json::object();
    j["clean"] = report.clean();
    j["resources_checked"] = report.resources_checked;
    j["extents_checked"] = report.extents_checked;
    Json problems = Json::array();
    for (const auto& p : report.problems) problems.push_back(p);
    j["problems"] = std::move(problems);
    PrintDocument(inv, j);
  } else {
    for (const auto& p : report.problems) PrintLine(inv, p);
    PrintLine(inv,
              "checked " + std::to_string(report.resources_checked) +
                  " resources, " + std::to_string(report.extents_checked) +
                  " extents: " +
                  (report.clean()
                       ? std::string("clean")
                       : std::to_string(report.problems.size()) + " problems"));
  }
  if (!report.clean()) {
    inv.output.exit_code = 1;
    inv.output.err += "cmkctl: fsck found " +
                      std::to_string(report.problems.size()) + " problems\n";
  }
  return Status::Ok();
}

Status Stats(Invocation& inv) {
  CMKFS_ASSIGN_OR_RETURN(auto stats, inv.ctx->engine->Stats());
  Json j = Json::object();
  j["capacity_bytes"] = stats.capacity_bytes;
  j["free_bytes"] = stats.free_bytes;
  j["allocated_bytes"] = stats.allocated_bytes;
  Emit(inv, j);
  return Status::Ok();
}

}  // namespace

const std::vector<CommandSpec>& DiskCommands() {
  static const std::vector<CommandSpec> kCommands = {
      {"des",
       "create",
       {"DES"},
       {{"--key-id", FlagKind::kValue, "KEYID", Complete::kKeyId},
        {"--auto-rotate", FlagKind::kSwitch, ""}},
       "Creates a disk encryption set; prints its identity's object id "
       "(grant it get wrapKey unwrapKey in the key's vault).",
       DesCreate},
      {"des",
       "update",
       {"DES"},
       {{"--key-id", FlagKind::kValue, "KEYID", Complete::kKeyId},
        {"--auto-rotate", FlagKind::kSwitch, "true|false", Complete::kChoices}},
       "Points a disk encryption set at a new key or version (re-wraps every "
       "DEK that uses it) or changes auto-rotation.",
       DesUpdate},
      {"des", "show", {"DES"}, {}, "Shows a disk encryption set.", DesShow},
      {"des",
       "list",
       {},
       {},
       "Lists the disk encryption sets.",
       DesList,
       {"ls"}},
      {"des",
       "delete",
       {"DES"},
       {},
       "Deletes a disk encryption set no resource uses.",
       DesDelete},
      {"disk",
       "create",
       {"DISK"},
       {{"--size", FlagKind::kValue, "SIZE"},
        {"--sku", FlagKind::kValue, "SKU", Complete::kDiskSku},
        {"--des", FlagKind::kValue, "DES", Complete::kDes},
        {"--source", FlagKind::kValue, "SNAPSHOT_OR_IMAGE",
         Complete::kSnapshotOrImage},
        {"--import", FlagKind::kValue, "FILE", Complete::kFile},
        {"--guest-encrypted", FlagKind::kSwitch, ""}},
       "Creates a disk: empty, from a snapshot or image, or imported from a "
       "raw image file. SKUs: Premium_LRS (default), StandardSSD_LRS, "
       "Standard_LRS, UltraSSD_LRS.",
       DiskCreate},
      {"disk",
       "update",
       {"DISK"},
       {{"--des", FlagKind::kValue, "DES", Complete::kDes}},
       "Switches a disk to customer-managed keys (re-wraps its DEK).",
       DiskUpdate},
      {"disk",
       "resize",
       {"DISK"},
       {{"--size", FlagKind::kValue, "SIZE"}},
       "Grows a disk.",
       DiskResize},
      {"disk",
       "show",
       {"DISK"},
       {},
       "Shows a disk.",
       ResourceShow<ResourceKind::kDisk>},
      {"disk",
       "list",
       {},
       {},
       "Lists the disks.",
       ResourceList<ResourceKind::kDisk>,
       {"ls"}},
      {"disk",
       "delete",
       {"DISK"},
       {},
       "Deletes a disk (not while open).",
       ResourceDelete<ResourceKind::kDisk>},
      {"disk",
       "export",
       {"DISK", "FILE"},
       {},
       "Decrypts a disk into a new sparse raw image file.",
       ResourceExport<ResourceKind::kDisk>},
      {"disk",
       "move",
       {"DISK"},
       {{"--resource-group", FlagKind::kValue, "RG"},
        {"--subscription", FlagKind::kValue, "SUB"}},
       "Moves a platform-key disk: --resource-group RG [--subscription SUB] "
       "name the target (refused for customer-key disks).",
       DiskMove},
      {"snapshot",
       "create",
       {"SNAPSHOT"},
       {{"--source", FlagKind::kValue, "DISK", Complete::kDisk}},
       "Takes a point-in-time, read-only snapshot of a disk.",
       SnapshotCreate},
      {"snapshot",
       "show",
       {"SNAPSHOT"},
       {},
       "Shows a snapshot.",
       ResourceShow<ResourceKind::kSnapshot>},
      {"snapshot",
       "list",
       {},
       {},
       "Lists the snapshots.",
       ResourceList<ResourceKind::kSnapshot>,
       {"ls"}},
      {"snapshot",
       "delete",
       {"SNAPSHOT"},
       {},
       "Deletes a snapshot.",
       ResourceDelete<ResourceKind::kSnapshot>},
      {"snapshot",
       "export",
       {"SNAPSHOT", "FILE"},
       {},
       "Decrypts a snapshot into a new sparse raw image file.",
       ResourceExport<ResourceKind::kSnapshot>},
      {"image",
       "create",
       {"IMAGE"},
       {{"--source", FlagKind::kValue, "DISK_OR_SNAPSHOT",
         Complete::kDiskOrSnapshot}},
       "Makes a read-only image of a disk or snapshot.",
       ImageCreate},
      {"image",
       "show",
       {"IMAGE"},
       {},
       "Shows an image.",
       ResourceShow<ResourceKind::kImage>},
      {"image",
       "list",
       {},
       {},
       "Lists the images.",
       ResourceList<ResourceKind::kImage>,
       {"ls"}},
      {"image",
       "delete",
       {"IMAGE"},
       {},
       "Deletes an image.",
       ResourceDelete<ResourceKind::kImage>},
      {"image",
       "export",
       {"IMAGE", "FILE"},
       {},
       "Decrypts an image into a new sparse raw image file.",
       ResourceExport<ResourceKind::kImage>},
      {"fsck",
       "",
       {},
       {},
       "Checks the metadata and extents; exit status 1 when not clean.",
       Fsck},
      {"stats",
       "",
       {},
       {},
       "Shows the backing store's capacity and usage.",
       Stats},
  };
  return kCommands;
}

}  // namespace cmkfs::cli
