// The RBD volume over librbd's and librados's C API: the only file of the
// product that includes them.
#include "rbd_volume.h"

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace cmkfs::fs {

static_assert(kRbdImageFeatures ==
              (RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK |
               RBD_FEATURE_OBJECT_MAP | RBD_FEATURE_FAST_DIFF |
               RBD_FEATURE_DEEP_FLATTEN));

namespace {

constexpr uint64_t kSector = kVolumeSectorSize;
// Ceph returns -EBLOCKLISTED, its name for ESHUTDOWN, to a client that the
// cluster fenced out (another client broke its exclusive lock).
constexpr int kEBlocklisted = ESHUTDOWN;

std::string Strerror(int r) { return std::strerror(r < 0 ? -r : r); }

// librbd's or librados's negative errno `r` of `call` on `what` ("image
// cmkfs/d1", "pool cmkfs") as a Status. `client` names the client for the
// permission errors.
Status CephError(int r, std::string_view call, const std::string& what,
                 const std::string& client) {
  const std::string detail =
      " (" + std::string(call) + ": " + Strerror(r) + ")";
  switch (-r) {
    case ENOENT:
      return NotFoundError(what + " does not exist" + detail);
    case EEXIST:
      return AlreadyExistsError(what + " exists already" + detail);
    case EPERM:
    case EACCES:
      return PermissionDeniedError(client + " is not allowed to use " + what +
                                   detail);
    case ENOSPC:
    case EDQUOT:
      return NoSpaceError(what + ": the pool is full or over its quota" +
                          detail);
    case EROFS:
      return ReadOnlyError(what +
                           " refuses writes: it is read-only, or this client "
                           "lost its exclusive lock to another one" +
                           detail);
    case kEBlocklisted:
      return IOError(what + ": " + client +
                     " was blocklisted by the cluster (another client took "
                     "the image's exclusive lock); reopen the image" +
                     detail);
    case EBUSY:
      return BusyError(what + " is open elsewhere (it has watchers)" + detail);
    case ENOTEMPTY:
      return FailedPreconditionError(what + " has snapshots" + detail);
    default:
      return IOError(std::string(call) + " on " + what + ": " + Strerror(r));
  }
}

// One librbd asynchronous request: submit, then Wait for its completion.
class Completion {
 public:
  Completion() { created_ = rbd_aio_create_completion(nullptr, nullptr, &c_); }
  ~Completion() {
    if (created_ == 0) rbd_aio_release(c_);
  }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // < 0: the completion could not be made.
  int created() const { return created_; }
  rbd_completion_t get() const { return c_; }
  // The request's result: >= 0 (bytes, for a read) or a negative errno.
  ssize_t Wait() {
    rbd_aio_wait_for_complete(c_);
    return rbd_aio_get_return_value(c_);
  }

 private:
  rbd_completion_t c_ = nullptr;
  int created_ = -ENOMEM;
};

bool SectorIsZero(const uint8_t* p) {
  uint64_t acc = 0;
  for (size_t i = 0; i < kSector; i += sizeof(uint64_t)) {
    uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    acc |= w;
  }
  return acc == 0;
}

// The first run of consecutive extents a diff_iterate2 callback reports:
// it ends (and the iteration is stopped) at the first gap.
struct FirstRun {
  static constexpr int kStop = -ECANCELED;
  bool found = false;
  uint64_t start = 0, end = 0;

  static int Callback(uint64_t off, size_t len, int exists, void* arg) {
    auto* run = static_cast<FirstRun*>(arg);
    if (!exists || len == 0) return run->found ? kStop : 0;
    if (!run->found) {
      run->found = true;
      run->start = off;
      run->end = off + len;
      return 0;
    }
    if (off != run->end) return kStop;
    run->end += len;
    return 0;
  }
};

Status CheckFileReadable(const std::string& path, const std::string& what) {
  if (path.empty()) return InvalidArgumentError(what + ": no path given");
  if (::access(path.c_str(), R_OK) != 0) {
    const int err = errno;
    std::string m = what + " " + path + ": " + Strerror(err);
    if (err == ENOENT) return NotFoundError(std::move(m));
    if (err == EACCES) return PermissionDeniedError(std::move(m));
    return IOError(std::move(m));
  }
  return Status::Ok();
}

}  // namespace

// --- the connection

struct RbdCluster::Connection {
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  std::string client;
  std::string pool;

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (io) rados_ioctx_destroy(io);
    if (cluster) rados_shutdown(cluster);
  }

  std::string ImageWhat(const std::string& name) const {
    return "image " + pool + "/" + name;
  }
  Status Error(int r, std::string_view call, const std::string& what) const {
    return CephError(r, call, what, client);
  }
};

struct RbdVolume::Image {
  std::shared_ptr<RbdCluster::Connection> connection;
  rbd_image_t image = nullptr;
  std::string name;  // "cmkfs/d1"
  uint64_t size = 0;
  uint64_t object_size = 0;

  Image() = default;
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  ~Image() {
    if (image) rbd_close(image);
  }

  Status Error(int r, std::string_view call) const {
    return connection->Error(r, call, "image " + name);
  }
  // Waits for a submitted request; its negative result as an error.
  Result<ssize_t> Finish(Completion& c, int submitted, std::string_view call) {
    if (submitted < 0) return Error(submitted, call);
    ssize_t r = c.Wait();
    if (r < 0) return Error(static_cast<int>(r), call);
    return r;
  }
};

Result<std::unique_ptr<RbdCluster>> RbdCluster::Connect(
    const RbdConnectOptions& options) {
  const std::string& client = options.client_name;
  if (client.size() <= 7 || client.compare(0, 7, "client.") != 0) {
    return InvalidArgumentError("ceph client name '" + client +
                                "' is not of the form client.<id>");
  }
  if (options.pool.empty()) {
    return InvalidArgumentError("no ceph pool given for " + client);
  }
  CMKFS_RETURN_IF_ERROR(CheckFileReadable(options.conf_path, "ceph.conf"));
  CMKFS_RETURN_IF_ERROR(
      CheckFileReadable(options.keyring_path, "keyring of " + client));

  auto c = std::make_shared<Connection>();
  c->client = client;
  c->pool = options.pool;
  const std::string cluster_what = "the cluster of " + options.conf_path;
  int r = rados_create2(&c->cluster, "ceph", client.c_str(), 0);
  if (r < 0) {
    c->cluster = nullptr;
    return c->Error(r, "rados_create2", cluster_what);
  }
  r = rados_conf_read_file(c->cluster, options.conf_path.c_str());
  if (r < 0) return c->Error(r, "rados_conf_read_file", cluster_what);
  // After the file, so that these win over it: the keyring given; librbd's
  // cache off (a write must be visible to a second open once it returns, as
  // the Volume contract says, and the layers above cache nothing either);
  // a bounded wait for the monitors.
  const std::string timeout = std::to_string(options.connect_timeout_seconds);
  const std::pair<const char*, const char*> settings[] = {
      {"keyring", options.keyring_path.c_str()},
      {"rbd_cache", "false"},
      {"client_mount_timeout", timeout.c_str()},
  };
  for (const auto& [key, value] : settings) {
    r = rados_conf_set(c->cluster, key, value);
    if (r < 0) {
      return c->Error(r, std::string("rados_conf_set ") + key, cluster_what);
    }
  }
  r = rados_connect(c->cluster);
  if (r < 0) {
    if (r == -EACCES || r == -EPERM) {
      return PermissionDeniedError(client + " could not authenticate to " +
                                   cluster_what + " with the key in " +
                                   options.keyring_path +
                                   " (rados_connect: " + Strerror(r) + ")");
    }
    if (r == -ETIMEDOUT) {
      return IOError("no monitor of " + cluster_what + " answered " + client +
                     " within " + timeout +
                     " s (rados_connect: " + Strerror(r) + ")");
    }
    return c->Error(r, "rados_connect", cluster_what);
  }
  const std::string pool_what = "pool " + options.pool;
  r = rados_ioctx_create(c->cluster, options.pool.c_str(), &c->io);
  if (r < 0) {
    c->io = nullptr;
    return c->Error(r, "rados_ioctx_create", pool_what);
  }
  // Opening the context only looks the pool up in the OSD map: ask an OSD,
  // so that a key without access to the pool fails here, not at first use.
  uint64_t psize = 0;
  time_t pmtime = 0;
  r = rados_stat(c->io, "rbd_directory", &psize, &pmtime);
  if (r == -EPERM || r == -EACCES) {
    return PermissionDeniedError(
        client + " may not use " + pool_what +
        ": its OSD caps do not grant it (it needs osd 'profile rbd pool=" +
        options.pool + "') (rados_stat: " + Strerror(r) + ")");
  }
  if (r < 0 && r != -ENOENT) return c->Error(r, "rados_stat", pool_what);
  return std::unique_ptr<RbdCluster>(new RbdCluster(std::move(c)));
}

RbdCluster::RbdCluster(std::shared_ptr<Connection> connection)
    : connection_(std::move(connection)) {}

RbdCluster::~RbdCluster() = default;

const std::string& RbdCluster::client_name() const {
  return connection_->client;
}
const std::string& RbdCluster::pool() const { return connection_->pool; }

namespace {
Status CheckImageName(const std::string& name) {
  if (name.empty() || name.find_first_of("/@") != std::string::npos) {
    return InvalidArgumentError("'" + name +
                                "' is not an RBD image name (empty, or with "
                                "'/' or '@')");
  }
  return Status::Ok();
}
}  // namespace

Status RbdCluster::CreateImage(const std::string& name, uint64_t size,
                               const RbdImageOptions& options) {
  CMKFS_RETURN_IF_ERROR(CheckImageName(name));
  const std::string what = connection_->ImageWhat(name);
  if (size == 0 || size % kSector != 0) {
    return InvalidArgumentError(what + ": size " + std::to_string(size) +
                                " is not a non-zero multiple of " +
                                std::to_string(kSector) + " bytes");
  }
  const uint64_t object_size = options.object_size;
  if (!std::has_single_bit(object_size) || object_size < 4096 ||
      object_size > (32u << 20)) {
    return InvalidArgumentError(what + ": object size " +
                                std::to_string(object_size) +
                                " is not a power of two from 4 KiB to 32 MiB");
  }
  rbd_image_options_t opts;
  rbd_image_options_create(&opts);
  int r = rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FORMAT, 2);
  if (r == 0) {
    r = rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES,
                                     kRbdImageFeatures);
  }
  if (r == 0) {
    r = rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_ORDER,
                                     std::countr_zero(object_size));
  }
  if (r == 0) r = rbd_create4(connection_->io, name.c_str(), size, opts);
  rbd_image_options_destroy(opts);
  if (r < 0) return connection_->Error(r, "rbd_create4", what);
  return Status::Ok();
}

Status RbdCluster::RemoveImage(const std::string& name) {
  CMKFS_RETURN_IF_ERROR(CheckImageName(name));
  int r = rbd_remove(connection_->io, name.c_str());
  if (r < 0) {
    return connection_->Error(r, "rbd_remove", connection_->ImageWhat(name));
  }
  return Status::Ok();
}

Result<std::shared_ptr<Volume>> RbdCluster::OpenVolume(
    const std::string& name, std::optional<uint64_t> expected_size) {
  CMKFS_RETURN_IF_ERROR(CheckImageName(name));
  auto image = std::make_unique<RbdVolume::Image>();
  image->connection = connection_;
  image->name = connection_->pool + "/" + name;
  int r = rbd_open(connection_->io, name.c_str(), &image->image, nullptr);
  if (r < 0) {
    image->image = nullptr;
    return image->Error(r, "rbd_open");
  }
  rbd_image_info_t info;
  r = rbd_stat(image->image, &info, sizeof info);
  if (r < 0) return image->Error(r, "rbd_stat");
  uint64_t stripe_count = 0;
  r = rbd_get_stripe_count(image->image, &stripe_count);
  if (r < 0) return image->Error(r, "rbd_get_stripe_count");
  image->size = info.size;
  image->object_size = info.obj_size;
  const std::string what = "image " + image->name;
  if (stripe_count > 1) {
    return NotSupportedError(what + " is striped over " +
                             std::to_string(stripe_count) +
                             " objects; only stripe count 1 is supported");
  }
  if (info.size % kSector != 0) {
    return InvalidArgumentError(what + " is " + std::to_string(info.size) +
                                " bytes, not a multiple of " +
                                std::to_string(kSector));
  }
  if (expected_size && *expected_size != info.size) {
    return InvalidArgumentError(what + " is " + std::to_string(info.size) +
                                " bytes, expected " +
                                std::to_string(*expected_size));
  }
  return std::shared_ptr<Volume>(new RbdVolume(std::move(image)));
}

// --- the volume

RbdVolume::RbdVolume(std::unique_ptr<Image> image) : image_(std::move(image)) {}

RbdVolume::~RbdVolume() = default;

const std::string& RbdVolume::name() const { return image_->name; }
uint64_t RbdVolume::object_size() const { return image_->object_size; }
uint64_t RbdVolume::Size() const { return image_->size; }
uint64_t RbdVolume::alignment() const { return kSector; }

Status RbdVolume::Read(uint64_t offset, std::span<uint8_t> buf,
                       HoleMap* holes) {
  CMKFS_RETURN_IF_ERROR(CheckVolumeRange(image_->name, "read", offset,
                                         buf.size(), Size(), kSector));
  if (holes) {
    if (buf.size() > HoleMap::kMaxSectors * kSector) {
      return InvalidArgumentError("read of " + image_->name +
                                  " reporting holes is over 2 MiB");
    }
    holes->Clear();
  }
  if (buf.empty()) return Status::Ok();
  Completion c;
  if (c.created() < 0) return image_->Error(c.created(), "rbd_aio_read");
  int submitted = rbd_aio_read(image_->image, offset, buf.size(),
                               reinterpret_cast<char*>(buf.data()), c.get());
  CMKFS_ASSIGN_OR_RETURN(ssize_t n,
                         image_->Finish(c, submitted, "rbd_aio_read"));
  if (static_cast<uint64_t>(n) != buf.size()) {
    return IOError("rbd_aio_read on image " + image_->name + " returned " +
                   std::to_string(n) + " of " + std::to_string(buf.size()) +
                   " bytes at offset " + std::to_string(offset) +
                   " (was the image shrunk elsewhere?)");
  }
  if (holes) {
    for (size_t i = 0; i < buf.size() / kSector; ++i) {
      if (SectorIsZero(buf.data() + i * kSector)) holes->Set(i, 1);
    }
  }
  return Status::Ok();
}

Status RbdVolume::Write(uint64_t offset, std::span<const uint8_t> data) {
  CMKFS_RETURN_IF_ERROR(CheckVolumeRange(image_->name, "write", offset,
                                         data.size(), Size(), kSector));
  if (data.empty()) return Status::Ok();
  Completion c;
  if (c.created() < 0) return image_->Error(c.created(), "rbd_aio_write");
  int submitted =
      rbd_aio_write(image_->image, offset, data.size(),
                    reinterpret_cast<const char*>(data.data()), c.get());
  return image_->Finish(c, submitted, "rbd_aio_write").status();
}

Status RbdVolume::Zero(uint64_t offset, uint64_t length, bool unmap) {
  CMKFS_RETURN_IF_ERROR(
      CheckVolumeRange(image_->name, "zero", offset, length, Size(), kSector));
  if (length == 0) return Status::Ok();
  Completion c;
  if (c.created() < 0) {
    return image_->Error(c.created(), "rbd_aio_write_zeroes");
  }
  const int flags = unmap ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
  int submitted = rbd_aio_write_zeroes(image_->image, offset, length, c.get(),
                                       flags, /*op_flags=*/0);
  return image_
      ->Finish(c, submitted,
               unmap ? "rbd_aio_write_zeroes" : "rbd_aio_write_zeroes (thick)")
      .status();
}

Result<BlockRun> RbdVolume::BlockStatus(uint64_t offset, uint64_t length) {
  CMKFS_RETURN_IF_ERROR(CheckVolumeRange(image_->name, "block status", offset,
                                         length, Size(), 1));
  if (length == 0) {
    return InvalidArgumentError("block status of " + image_->name +
                                ": the range is empty");
  }
  const uint64_t obj = image_->object_size;
  const uint64_t window_end =
      (offset / obj + kMaxStatusObjects) * obj;  // object-aligned
  const uint64_t end = std::min(offset + length, window_end);

  // Which objects exist: the object map's diff (one request).
  FirstRun objects;
  int r = rbd_diff_iterate2(image_->image, nullptr, offset, end - offset,
                            /*include_parent=*/1, /*whole_object=*/1,
                            &FirstRun::Callback, &objects);
  if (r < 0 && r != FirstRun::kStop) {
    return image_->Error(r, "rbd_diff_iterate2");
  }
  if (!objects.found) return BlockRun{false, end - offset};
  if (objects.start > offset) return BlockRun{false, objects.start - offset};

  // `offset` lies in an existing object: where its data is.
  const uint64_t obj_end = std::min(end, (offset / obj + 1) * obj);
  FirstRun inside;
  r = rbd_diff_iterate2(image_->image, nullptr, offset, obj_end - offset,
                        /*include_parent=*/1, /*whole_object=*/0,
                        &FirstRun::Callback, &inside);
  if (r < 0 && r != FirstRun::kStop) {
    return image_->Error(r, "rbd_diff_iterate2");
  }
  if (!inside.found) return BlockRun{false, obj_end - offset};
  if (inside.start > offset) return BlockRun{false, inside.start - offset};
  uint64_t run_end = inside.end;
  // Data to the end of this object: the next existing objects are data too.
  if (run_end == obj_end && objects.end > obj_end) run_end = objects.end;
  return BlockRun{true, std::min(run_end, end) - offset};
}

Status RbdVolume::Flush() {
  Completion c;
  if (c.created() < 0) return image_->Error(c.created(), "rbd_aio_flush");
  int submitted = rbd_aio_flush(image_->image, c.get());
  return image_->Finish(c, submitted, "rbd_aio_flush").status();
}

}  // namespace cmkfs::fs
