// A Volume over one RBD image in a Ceph pool (docs/ceph.md, "The RBD volume"),
// and the cluster connection that creates, removes and opens images. fs/ceph
// (library cmkfs_ceph) is the only code that includes librbd or librados;
// this header includes neither.
//
// What the cluster sees is what the layer above writes: under an encryption
// layer (NewEncryptedVolume) only ciphertext, and no key ever reaches RADOS.
// No message of this file names a key or holds data bytes.
//
// Errors of every call: librbd's and librados's negative errno become a
// Status: -ENOENT NotFound, -EEXIST AlreadyExists, -EPERM/-EACCES
// PermissionDenied (naming the client and the pool), -ENOSPC/-EDQUOT
// NoSpace, -EROFS ReadOnly and -EBLOCKLISTED IOError (naming the image: it
// is read-only, or another client took its exclusive lock and fenced this
// one out), anything else IOError naming the librbd call and strerror.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "cmkfs/status.h"
#include "cmkfs/volume.h"

namespace cmkfs::fs {

struct RbdConnectOptions {
  std::string conf_path;     // ceph.conf: the monitors, auth settings
  std::string client_name;   // "client.cmkfs"
  std::string keyring_path;  // the client's key (read by librados only)
  std::string pool;          // the pool of the images: "cmkfs"
  // How long connecting may wait for the monitors (client_mount_timeout).
  uint32_t connect_timeout_seconds = 30;
};

// How CreateImage lays an image out. Every image is format 2 with the
// features layering, exclusive-lock, object-map, fast-diff, deep-flatten
// (kRbdImageFeatures) and stripe count 1.
struct RbdImageOptions {
  // RADOS object size: a power of two in [4 KiB, 32 MiB]. Ceph's default.
  // BlockStatus tells holes from data per object (see RbdVolume).
  uint64_t object_size = 4 << 20;
};

// RBD_FEATURE_LAYERING | EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF |
// DEEP_FLATTEN, librbd's bits (rbd/features.h), for callers that check an
// image with librbd itself.
inline constexpr uint64_t kRbdImageFeatures = 1 | 4 | 8 | 16 | 32;

class RbdVolume;

// A connection to one cluster as one client, bound to one pool.
// Thread-safe: every method may be called from many threads at once.
// Ownership: the connection (librados's rados_t and the pool's I/O context)
// is shared with every volume it opened. It is shut down when the
// RbdCluster and all of those volumes are gone, so a volume stays usable
// after the RbdCluster is destroyed.
class RbdCluster {
 public:
  // Reads `conf_path`, authenticates as `client_name` with the key in
  // `keyring_path` and opens `pool`, then checks that the client may read
  // the pool. Errors: NotFound (the conf or keyring file, the pool),
  // InvalidArgument (a client name that is not "client.<id>", an empty
  // pool), PermissionDenied (authentication refused; no access to the pool:
  // the message names the client, the pool and the caps it needs), IOError
  // (no monitor answered within the timeout, and the rest).
  static Result<std::unique_ptr<RbdCluster>> Connect(
      const RbdConnectOptions& options);

  ~RbdCluster();
  RbdCluster(const RbdCluster&) = delete;
  RbdCluster& operator=(const RbdCluster&) = delete;

  // "client.cmkfs", "cmkfs": what the errors name.
  const std::string& client_name() const;
  const std::string& pool() const;

  // Creates image `name` of `size` bytes (a non-zero multiple of
  // kVolumeSectorSize) as RbdImageOptions says; a new image is all holes.
  // Errors: AlreadyExists, InvalidArgument (the name, the size, the object
  // size), PermissionDenied, NoSpace.
  Status CreateImage(const std::string& name, uint64_t size,
                     const RbdImageOptions& options = {});

  // Removes image `name` and its data. Errors: NotFound, Busy (another
  // client or volume has it open), FailedPrecondition (it has snapshots).
  Status RemoveImage(const std::string& name);

  // Opens image `name` as a Volume (an RbdVolume). With `expected_size`, an
  // image of another size is refused (InvalidArgument naming both sizes).
  // Errors: NotFound, InvalidArgument (a size that is not a multiple of
  // kVolumeSectorSize), NotSupported (an image striped over more than one
  // object at a time: stripe count > 1), PermissionDenied.
  Result<std::shared_ptr<Volume>> OpenVolume(
      const std::string& name,
      std::optional<uint64_t> expected_size = std::nullopt);

 private:
  friend class RbdVolume;
  struct Connection;
  explicit RbdCluster(std::shared_ptr<Connection> connection);
  const std::shared_ptr<Connection> connection_;
};

// The Volume over one open image, as RbdCluster::OpenVolume returns it.
//
// Thread-safety: every method may be called from many threads at once
// (librbd's image handle is thread-safe); each call submits librbd's
// asynchronous request and waits for its completion before it returns, so
// a write is visible to every read that starts after it returns, through
// this or any other open of the image (the librbd cache is off for this
// client, see docs/ceph.md).
//
// Alignment: offsets and lengths of Read, Write and Zero must be multiples
// of kVolumeSectorSize (InvalidArgument otherwise); the encryption layer
// above only issues such I/O. BlockStatus takes any range.
//
// Holes: see Read and BlockStatus. Size is the image's size at open; the
// volume does not follow a resize made elsewhere.
//
// Ownership: holds the image open (and the cluster connection alive) until
// it is destroyed; it must not be destroyed while a call is in progress.
class RbdVolume final : public Volume {
 public:
  ~RbdVolume() override;
  RbdVolume(const RbdVolume&) = delete;
  RbdVolume& operator=(const RbdVolume&) = delete;

  // "cmkfs/disk0": the pool and image, as errors name it.
  const std::string& name() const;
  uint64_t object_size() const;

  uint64_t Size() const override;
  // kVolumeSectorSize.
  uint64_t alignment() const override;

  // One librbd read of the whole range. With `holes`, the range is at most
  // HoleMap::kMaxSectors sectors, and every sector that reads as 4096 zero
  // bytes is reported as a hole. Why not diff_iterate2: on the writeable
  // head it reports, per existing object, [0, the object's size) as data,
  // so a sector never written inside a written object would be "data" and
  // an encryption layer above would decrypt its zeros into garbage instead
  // of returning zeros. The bytes just read are exact, need no second round
  // trip and cannot race a concurrent write; a stored sector of all zeros
  // that was written as such is reported as a hole, which reads the same.
  Status Read(uint64_t offset, std::span<uint8_t> buf, HoleMap* holes) override;

  // One librbd write of `data`.
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;

  // librbd's write-zeroes. With `unmap` it is a discard that zeroes what it
  // cannot deallocate: objects wholly inside the range are removed (holes),
  // an object's tail is truncated, the rest is written as zeros. (A plain
  // rbd discard skips the parts of objects smaller than
  // rbd_discard_granularity_bytes, leaving the old bytes there.) Without
  // `unmap` it writes zeros (write-same, thick): the range is allocated.
  Status Zero(uint64_t offset, uint64_t length, bool unmap) override;

  // From librbd's diff_iterate2 against the beginning of time (include
  // parent): which objects exist comes from the object map (fast-diff,
  // whole_object), and the object holding `offset` is refined by listing it
  // (whole_object = false), which gives [0, its size). So a data run starts
  // where an object's data starts and may cover zeros never written inside
  // an object (data that reads as zeros); a hole is exact to the object.
  // A run is reported for at most kMaxStatusObjects objects.
  Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) override;

  // librbd's flush: every write and zero that returned before is durable
  // (they already are once they return, with the cache off).
  Status Flush() override;

  // BlockStatus looks at most this many objects ahead.
  static constexpr uint64_t kMaxStatusObjects = 4096;

 private:
  friend class RbdCluster;
  struct Image;
  explicit RbdVolume(std::unique_ptr<Image> image);
  const std::unique_ptr<Image> image_;
};

}  // namespace cmkfs::fs
