// The RBD volume (fs/ceph) on a real single-node Ceph cluster
// (tests/ceph/cluster.sh): the shared typed Volume suite over the RBD volume
// alone and under the encryption layer, and what a user of an RBD-backed
// disk checks: the image's features, data seen by a second open, zeroed and
// discarded ranges, clear errors for a missing image, a wrong size and a key
// without access to the pool.
//
// The cluster: under ctest, the one ceph.rbd.cluster_up started for the run
// (CMKFS_CEPH_SHARED, see CMakeLists.txt). Otherwise (the binary run by
// hand, or that test filtered out) the process starts its own the first
// time a test needs one (about 5 s) with CMKFS_CEPH_OWNER set to its pid, so
// that cluster.sh's watchdog tears it down should the process die, and tears
// it down when it ends. A cluster that did not start fails every test that
// needs it with cluster.sh's one-line reason; none is skipped.
#include "rbd_volume.h"

#include <gtest/gtest.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fs/volume/volume_suite.h"
#include "layers.h"

namespace cmkfs::fs {
namespace {

using volume_suite::AllZero;
using volume_suite::EncryptedOver;
using volume_suite::kBlock;
using volume_suite::kSector;
using volume_suite::kSize;
using volume_suite::LoadedKey;
using volume_suite::Pattern;
using volume_suite::ReadBack;
using volume_suite::Stack;

const std::string kClusterScript =
    std::string(CMKFS_SOURCE_DIR) + "/tests/ceph/cluster.sh";
constexpr uint64_t kMiB = 1 << 20;

struct RunResult {
  int status = -1;  // the exit status, or -1
  std::string output;
};

// `command` under /bin/sh, with its stderr in its output.
RunResult Shell(const std::string& command) {
  RunResult result;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return result;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    result.output.append(buf, n);
  int st = ::pclose(p);
  if (st != -1 && WIFEXITED(st)) result.status = WEXITSTATUS(st);
  return result;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// The cluster of this test process: started by Up() at the first test that
// needs it, torn down when the process ends.
class CephCluster : public ::testing::Environment {
 public:
  // True once there is a cluster and client.cmkfs is connected to it; else
  // reason() says why (cluster.sh's one line).
  bool Up() {
    if (!started_) Start();
    return cluster_ != nullptr;
  }
  const std::string& reason() const { return reason_; }
  RbdCluster& cluster() { return *cluster_; }
  // CEPH_CONF, CEPH_KEYRING, CEPH_CLIENT_NAME, CEPH_POOL,
  // CEPH_ADMIN_KEYRING, ... as `cluster.sh env` prints them.
  const std::string& env(const std::string& key) { return env_[key]; }
  const std::string& dir() const { return dir_; }

  RbdConnectOptions ClientOptions() {
    RbdConnectOptions o;
    o.conf_path = env("CEPH_CONF");
    o.client_name = env("CEPH_CLIENT_NAME");
    o.keyring_path = env("CEPH_KEYRING");
    o.pool = env("CEPH_POOL");
    o.connect_timeout_seconds = 20;
    return o;
  }

  // `ceph ARGS` (or `rbd`) as client.admin.
  RunResult Admin(const std::string& tool, const std::string& args) {
    return Shell("timeout -k 2 60 " + tool + " --conf " +
                 Quote(env("CEPH_CONF")) + " --name client.admin --keyring " +
                 Quote(env("CEPH_ADMIN_KEYRING")) + " " + args);
  }

  void TearDown() override {
    cluster_.reset();
    if (!own_) return;
    RunResult down = Shell("timeout -k 2 60 bash " + Quote(kClusterScript) +
                           " down " + Quote(dir_));
    if (down.status != 0) {
      std::cerr << "cluster.sh down " << dir_ << " failed:\n"
                << down.output << std::endl;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  void Start() {
    started_ = true;
    if (Attach()) return;
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp && *tmp ? tmp : "/tmp") + "/cmkfs-rbd-test.XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      reason_ = "mkdtemp " + tmpl + ": " + std::strerror(errno);
      return;
    }
    dir_ = tmpl;
    own_ = true;
    const auto t0 = std::chrono::steady_clock::now();
    RunResult up = Shell("CMKFS_CEPH_OWNER=" + std::to_string(::getpid()) +
                         " timeout -k 5 150 bash " + Quote(kClusterScript) +
                         " up " + Quote(dir_));
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (up.status != 0) {
      std::cerr << up.output << std::endl;
      reason_ = "the Ceph test cluster did not start (cluster.sh up exited " +
                std::to_string(up.status) + ")";
      std::istringstream lines(up.output);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("cluster.sh:", 0) == 0) {
          reason_ = line;
          break;
        }
      }
      return;
    }
    std::cerr << up.output.substr(0, up.output.find('\n')) << " (in " << secs
              << " s)" << std::endl;
    ConnectTo(dir_);
  }

  // The run's shared cluster, when CMKFS_CEPH_SHARED's state names this
  // process's parent (ctest): true when there is one to use or to fail on.
  bool Attach() {
    const char* shared = std::getenv("CMKFS_CEPH_SHARED");
    if (!shared || !*shared) return false;
    std::ifstream in(std::string(shared) + "/state");
    std::string word;
    long owner = 0;
    if (!(in >> word >> owner) || owner != ::getppid()) return false;
    if (word == "failed") {
      std::getline(in >> std::ws, reason_);
      if (reason_.empty()) reason_ = "ceph.rbd.cluster_up failed";
      return true;
    }
    if (word != "ok") return false;
    std::cerr << "using the run's cluster in " << shared << "/cluster"
              << std::endl;
    ConnectTo(std::string(shared) + "/cluster");
    return true;
  }

  // Reads `cluster.sh env DIR` and connects as client.cmkfs.
  void ConnectTo(const std::string& dir) {
    dir_ = dir;
    RunResult printed =
        Shell("bash " + Quote(kClusterScript) + " env " + Quote(dir));
    if (printed.status != 0) {
      reason_ = "cluster.sh env " + dir + " failed: " + printed.output;
      return;
    }
    std::istringstream lines(printed.output);
    for (std::string line; std::getline(lines, line);) {
      auto eq = line.find('=');
      if (eq == std::string::npos || line.rfind("export ", 0) == 0) continue;
      std::string value = line.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
        value = value.substr(1, value.size() - 2);
      }
      env_[line.substr(0, eq)] = value;
    }
    auto c = RbdCluster::Connect(ClientOptions());
    if (!c.ok()) {
      reason_ = "connecting to the test cluster in " + dir + " as " +
                env("CEPH_CLIENT_NAME") + ": " + c.status().ToString();
      return;
    }
    cluster_ = std::move(*c);
  }

  bool started_ = false;
  bool own_ = false;  // started by this process: torn down at its end
  std::string dir_, reason_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<RbdCluster> cluster_;
};

CephCluster* const ceph = static_cast<CephCluster*>(
    ::testing::AddGlobalTestEnvironment(new CephCluster));

std::string NewImageName() {
  static int n = 0;
  return "t" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// --- the shared suite

// A new image of kSize bytes with 64 KiB objects: RBD tells holes from data
// per object, and the suite checks holes per 64 KiB block.
Stack Rbd() {
  Stack s;
  if (!ceph->Up()) {
    ADD_FAILURE() << "no Ceph test cluster: " << ceph->reason();
    return s;
  }
  const std::string name = NewImageName();
  Status st = ceph->cluster().CreateImage(name, kSize, {.object_size = kBlock});
  if (!st.ok()) {
    ADD_FAILURE() << st.ToString();
    return s;
  }
  auto v = ceph->cluster().OpenVolume(name, kSize);
  if (!v.ok()) {
    ADD_FAILURE() << v.status().ToString();
    return s;
  }
  s.vol = s.writer = s.bottom = *v;
  return s;
}

struct RbdStack {
  static Stack Make() { return Rbd(); }
};
// The cluster sees only what the encryption layer writes: the suite's
// ciphertext checks read `bottom`, the RBD volume.
struct EncryptedRbdStack {
  static Stack Make() {
    Stack s = Rbd();
    return s.vol ? EncryptedOver(s) : s;
  }
};

using RbdStacks = ::testing::Types<RbdStack, EncryptedRbdStack>;

}  // namespace
}  // namespace cmkfs::fs

namespace cmkfs::fs::volume_suite {
// ctest names: ceph.VolumeTest.<test><type>.
INSTANTIATE_TYPED_TEST_SUITE_P(VolumeTest, VolumeTest, RbdStacks);
}  // namespace cmkfs::fs::volume_suite

namespace cmkfs::fs {
namespace {

// --- RBD-specific

class RbdVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ceph->Up()) << "no Ceph test cluster: " << ceph->reason();
  }
  RbdCluster& cluster() { return ceph->cluster(); }

  std::shared_ptr<Volume> CreateAndOpen(const std::string& name, uint64_t size,
                                        RbdImageOptions options = {}) {
    Status st = cluster().CreateImage(name, size, options);
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto v = cluster().OpenVolume(name, size);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : nullptr;
  }
};

// librbd used directly, as client.cmkfs: what the cluster holds, read
// without cmkfs.
class RawRbd {
 public:
  RawRbd() {
    int r = rados_create2(&cluster_, "ceph",
                          ceph->env("CEPH_CLIENT_NAME").c_str(), 0);
    if (r == 0)
      r = rados_conf_read_file(cluster_, ceph->env("CEPH_CONF").c_str());
    if (r == 0) {
      r = rados_conf_set(cluster_, "keyring",
                         ceph->env("CEPH_KEYRING").c_str());
    }
    if (r == 0) r = rados_connect(cluster_);
    if (r == 0)
      r = rados_ioctx_create(cluster_, ceph->env("CEPH_POOL").c_str(), &io_);
    status_ = r;
  }
  ~RawRbd() {
    if (io_) rados_ioctx_destroy(io_);
    if (cluster_) rados_shutdown(cluster_);
  }
  int status() const { return status_; }
  rados_ioctx_t io() const { return io_; }

 private:
  rados_t cluster_ = nullptr;
  rados_ioctx_t io_ = nullptr;
  int status_ = 0;
};

TEST_F(RbdVolumeTest, CreatesFormat2ImagesWithTheRequiredFeatures) {
  const std::string name = NewImageName();
  ASSERT_TRUE(cluster().CreateImage(name, 64 * kMiB).ok());
  {
    RawRbd raw;
    ASSERT_EQ(raw.status(), 0) << std::strerror(-raw.status());
    rbd_image_t image;
    ASSERT_EQ(rbd_open(raw.io(), name.c_str(), &image, nullptr), 0);
    uint8_t old = 1;
    uint64_t features = 0, stripe_count = 0;
    rbd_image_info_t info;
    EXPECT_EQ(rbd_get_old_format(image, &old), 0);
    EXPECT_EQ(rbd_get_features(image, &features), 0);
    EXPECT_EQ(rbd_get_stripe_count(image, &stripe_count), 0);
    EXPECT_EQ(rbd_stat(image, &info, sizeof info), 0);
    rbd_close(image);
    EXPECT_EQ(old, 0) << "not a format 2 image";
    EXPECT_EQ(features, RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK |
                            RBD_FEATURE_OBJECT_MAP | RBD_FEATURE_FAST_DIFF |
                            RBD_FEATURE_DEEP_FLATTEN);
    EXPECT_EQ(stripe_count, 1u);
    EXPECT_EQ(info.size, 64 * kMiB);
    EXPECT_EQ(info.obj_size, 4 * kMiB);
  }
  auto v = cluster().OpenVolume(name);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ((*v)->Size(), 64 * kMiB);
  EXPECT_EQ((*v)->alignment(), kVolumeSectorSize);
  auto run = (*v)->BlockStatus(0, 64 * kMiB);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_FALSE(run->data) << "a new image is one hole";
  EXPECT_EQ(run->length, 64 * kMiB);

  Status again = cluster().CreateImage(name, 64 * kMiB);
  EXPECT_EQ(again.kind(), ErrorKind::kAlreadyExists) << again.ToString();
  EXPECT_NE(again.message().find("cmkfs/" + name), std::string::npos)
      << again.ToString();
  EXPECT_EQ(cluster().CreateImage(NewImageName(), 4097).kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(cluster()
                .CreateImage(NewImageName(), kMiB, {.object_size = 3 << 20})
                .kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(cluster().CreateImage("a/b", kMiB).kind(),
            ErrorKind::kInvalidArgument);

  // Not while it is open.
  Status busy = cluster().RemoveImage(name);
  EXPECT_EQ(busy.kind(), ErrorKind::kBusy) << busy.ToString();
  v->reset();
  Status rm = cluster().RemoveImage(name);
  ASSERT_TRUE(rm.ok()) << rm.ToString();
  auto gone = cluster().OpenVolume(name);
  EXPECT_EQ(gone.status().kind(), ErrorKind::kNotFound)
      << gone.status().ToString();
  EXPECT_EQ(cluster().RemoveImage(name).kind(), ErrorKind::kNotFound);
}

TEST_F(RbdVolumeTest, SecondOpenReadsWhatTheFirstWrote) {
  const std::string name = NewImageName();
  auto first = CreateAndOpen(name, 16 * kMiB);
  ASSERT_NE(first, nullptr);
  // Four threads write disjoint MiBs at once, across an object boundary.
  std::vector<std::thread> writers;
  std::vector<Status> results(4);
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      results[t] = first->Write((3 + t) * kMiB, Pattern(kMiB, 10 + t));
    });
  }
  for (auto& w : writers) w.join();
  for (const Status& st : results) ASSERT_TRUE(st.ok()) << st.ToString();

  // No flush: a write that returned is visible to another open.
  auto second = cluster().OpenVolume(name, 16 * kMiB);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(ReadBack(**second, (3 + t) * kMiB, kMiB), Pattern(kMiB, 10 + t))
        << t;
  }
  // The exclusive lock moves to whichever open writes.
  ASSERT_TRUE((*second)->Write(10 * kMiB, Pattern(64 * 1024, 20)).ok());
  EXPECT_EQ(ReadBack(*first, 10 * kMiB, 64 * 1024), Pattern(64 * 1024, 20));
  ASSERT_TRUE(first->Write(10 * kMiB, Pattern(64 * 1024, 21)).ok());
  EXPECT_EQ(ReadBack(**second, 10 * kMiB, 64 * 1024), Pattern(64 * 1024, 21));
  EXPECT_TRUE(first->Flush().ok());
  EXPECT_TRUE((*second)->Flush().ok());

  // Encrypted through the first open, read with the same key through the
  // second: the plaintext; the image itself holds none of it.
  auto dek = crypto::RandomSecret(64);
  ASSERT_TRUE(dek.ok());
  auto key1 = std::make_shared<OwnedKeySlot>("disk e1");
  auto key2 = std::make_shared<OwnedKeySlot>("disk e2");
  ASSERT_TRUE(key1->Load(*dek).ok());
  ASSERT_TRUE(key2->Load(*dek).ok());
  auto enc1 = NewEncryptedVolume(first, key1, "e1");
  auto enc2 = NewEncryptedVolume(*second, key2, "e2");
  const auto plain = Pattern(kMiB + 3000, 30);
  const uint64_t at = 12 * kMiB + 100;
  ASSERT_TRUE(enc1->Write(at, plain).ok());
  EXPECT_EQ(ReadBack(*enc2, at, plain.size()), plain);
  // Where each plaintext sector went, the image holds other bytes.
  auto stored = ReadBack(**second, 12 * kMiB, 2 * kMiB);
  for (size_t i = 0; i + 64 <= plain.size(); i += kSector) {
    EXPECT_NE(0, std::memcmp(stored.data() + 100 + i, plain.data() + i, 64))
        << "plaintext at " << at + i << " is in the image";
  }
}

TEST_F(RbdVolumeTest, ZeroedRangesReadAsZerosAndDiscardedObjectsAreHoles) {
  // Ceph's default layout, 4 MiB objects.
  auto v = CreateAndOpen(NewImageName(), 16 * kMiB);
  ASSERT_NE(v, nullptr);
  const auto data = Pattern(12 * kMiB, 40);
  ASSERT_TRUE(v->Write(0, data).ok());

  // A discard of a whole object: zeros, and a hole.
  ASSERT_TRUE(v->Zero(4 * kMiB, 4 * kMiB, /*unmap=*/true).ok());
  EXPECT_TRUE(AllZero(ReadBack(*v, 4 * kMiB, 4 * kMiB)));
  auto run = v->BlockStatus(4 * kMiB, 12 * kMiB);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_FALSE(run->data);
  EXPECT_EQ(run->length, 4 * kMiB);
  run = v->BlockStatus(0, 16 * kMiB);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->data);
  EXPECT_EQ(run->length, 4 * kMiB);
  auto hole = FindBlockRun(*v, 0, 16 * kMiB, /*data=*/false);
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(hole->value_or(0), 4 * kMiB);

  // A discard of part of an object: zeros (not the old bytes, which a plain
  // rbd discard would leave there), which a read reports as holes.
  ASSERT_TRUE(v->Zero(64 * 1024, 64 * 1024, /*unmap=*/true).ok());
  std::vector<uint8_t> buf(256 * 1024);
  HoleMap holes;
  ASSERT_TRUE(v->Read(0, buf, &holes).ok());
  for (size_t i = 0; i < buf.size() / kSector; ++i) {
    EXPECT_EQ(holes.hole(i), i >= 16 && i < 32) << "sector " << i;
  }
  EXPECT_TRUE(AllZero({buf.begin() + 64 * 1024, buf.begin() + 128 * 1024}));
  EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + 64 * 1024),
            std::vector<uint8_t>(data.begin(), data.begin() + 64 * 1024));
  EXPECT_EQ(std::vector<uint8_t>(buf.begin() + 128 * 1024, buf.end()),
            std::vector<uint8_t>(data.begin() + 128 * 1024,
                                 data.begin() + 256 * 1024));

  // Zero without unmap: zeros, still allocated.
  ASSERT_TRUE(v->Zero(8 * kMiB, 4 * kMiB, /*unmap=*/false).ok());
  EXPECT_TRUE(AllZero(ReadBack(*v, 8 * kMiB, 4 * kMiB)));
  run = v->BlockStatus(8 * kMiB, 8 * kMiB);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->data);
  EXPECT_EQ(run->length, 4 * kMiB);

  // Sectors never written inside a written object: holes to a read, so the
  // encryption layer returns zeros for them, not decrypted zeros.
  auto key = LoadedKey();
  auto enc = NewEncryptedVolume(v, key, "e");
  const uint64_t base = 12 * kMiB;
  ASSERT_TRUE(enc->Write(base, Pattern(kSector, 50)).ok());
  ASSERT_TRUE(enc->Write(base + 20 * kSector, Pattern(kSector, 51)).ok());
  auto plain = ReadBack(*enc, base, 24 * kSector);
  EXPECT_EQ(std::vector<uint8_t>(plain.begin(), plain.begin() + kSector),
            Pattern(kSector, 50));
  EXPECT_TRUE(AllZero({plain.begin() + kSector, plain.begin() + 20 * kSector}));
  EXPECT_TRUE(AllZero({plain.begin() + 21 * kSector, plain.end()}));
  std::vector<uint8_t> stored(24 * kSector);
  ASSERT_TRUE(v->Read(base, stored, &holes).ok());
  for (size_t i = 0; i < 24; ++i) {
    EXPECT_EQ(holes.hole(i), i != 0 && i != 20) << "sector " << i;
  }
  EXPECT_TRUE(v->Flush().ok());
}

TEST_F(RbdVolumeTest, MissingImageAndWrongSizeAreClearErrors) {
  auto missing = cluster().OpenVolume("no-such-image");
  EXPECT_EQ(missing.status().kind(), ErrorKind::kNotFound)
      << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("image cmkfs/no-such-image"),
            std::string::npos)
      << missing.status().ToString();

  const std::string name = NewImageName();
  ASSERT_TRUE(cluster().CreateImage(name, kMiB).ok());
  auto wrong = cluster().OpenVolume(name, 2 * kMiB);
  EXPECT_EQ(wrong.status().kind(), ErrorKind::kInvalidArgument)
      << wrong.status().ToString();
  const std::string m = wrong.status().message();
  EXPECT_NE(m.find("cmkfs/" + name), std::string::npos) << m;
  EXPECT_NE(m.find("1048576"), std::string::npos) << m;
  EXPECT_NE(m.find("2097152"), std::string::npos) << m;
  EXPECT_TRUE(cluster().OpenVolume(name, kMiB).ok());

  // An image made elsewhere whose size is not whole sectors.
  RawRbd raw;
  ASSERT_EQ(raw.status(), 0);
  const std::string odd = NewImageName();
  int order = 22;
  ASSERT_EQ(rbd_create(raw.io(), odd.c_str(), 5000, &order), 0);
  auto bad = cluster().OpenVolume(odd);
  EXPECT_EQ(bad.status().kind(), ErrorKind::kInvalidArgument)
      << bad.status().ToString();
}

TEST_F(RbdVolumeTest, ClientWithoutAccessToThePoolGetsAClearError) {
  // A second pool, and a client with no OSD caps, made by the admin.
  RunResult r = ceph->Admin("ceph", "osd pool create other 8 8 replicated");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string nocaps_keyring = ceph->dir() + "/client.nocaps.keyring";
  r = ceph->Admin("ceph", "auth get-or-create client.nocaps mon 'allow r' -o " +
                              Quote(nocaps_keyring));
  ASSERT_EQ(r.status, 0) << r.output;

  RbdConnectOptions o = ceph->ClientOptions();
  o.pool = "other";
  auto c = RbdCluster::Connect(o);
  EXPECT_EQ(c.status().kind(), ErrorKind::kPermissionDenied)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("client.cmkfs may not use pool other"),
            std::string::npos)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("profile rbd pool=other"),
            std::string::npos)
      << c.status().ToString();

  o = ceph->ClientOptions();
  o.client_name = "client.nocaps";
  o.keyring_path = nocaps_keyring;
  c = RbdCluster::Connect(o);
  EXPECT_EQ(c.status().kind(), ErrorKind::kPermissionDenied)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("client.nocaps"), std::string::npos)
      << c.status().ToString();

  o = ceph->ClientOptions();
  o.pool = "no-such-pool";
  c = RbdCluster::Connect(o);
  EXPECT_EQ(c.status().kind(), ErrorKind::kNotFound) << c.status().ToString();
  EXPECT_NE(c.status().message().find("pool no-such-pool"), std::string::npos)
      << c.status().ToString();

  o = ceph->ClientOptions();
  o.keyring_path = ceph->dir() + "/no-such.keyring";
  c = RbdCluster::Connect(o);
  EXPECT_EQ(c.status().kind(), ErrorKind::kNotFound) << c.status().ToString();
  EXPECT_NE(c.status().message().find(o.keyring_path), std::string::npos)
      << c.status().ToString();

  // client.cmkfs with a key the cluster does not know.
  const std::string forged = ceph->dir() + "/forged.keyring";
  r = Shell("ceph-authtool --create-keyring " + Quote(forged) +
            " --gen-key -n client.cmkfs");
  ASSERT_EQ(r.status, 0) << r.output;
  o = ceph->ClientOptions();
  o.keyring_path = forged;
  c = RbdCluster::Connect(o);
  EXPECT_EQ(c.status().kind(), ErrorKind::kPermissionDenied)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("could not authenticate"),
            std::string::npos)
      << c.status().ToString();
  // No message holds a key: the forged one is not in it.
  std::ifstream in(forged);
  std::string keyring((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
  auto at = keyring.find("key = ");
  ASSERT_NE(at, std::string::npos);
  const std::string secret = keyring.substr(at + 6, 40);
  EXPECT_EQ(c.status().message().find(secret), std::string::npos);
}

// fs/ceph/rbd_volume.cc is the only product file that includes librbd or
// librados, and the header it exposes includes neither. (No cluster.)
TEST(RbdSourceTest, OnlyFsCephIncludesLibrbd) {
  namespace stdfs = std::filesystem;
  const stdfs::path root(CMKFS_SOURCE_DIR);
  std::vector<std::string> found;
  for (const char* top :
       {"core", "keystore", "fs", "cli", "vault", "include"}) {
    if (!stdfs::exists(root / top)) continue;
    for (const auto& e : stdfs::recursive_directory_iterator(root / top)) {
      const auto ext = e.path().extension();
      if (!e.is_regular_file() || (ext != ".h" && ext != ".cc")) continue;
      std::ifstream in(e.path());
      for (std::string line; std::getline(in, line);) {
        if (line.rfind("#include", 0) == 0 &&
            (line.find("rbd/") != std::string::npos ||
             line.find("rados/") != std::string::npos)) {
          found.push_back(stdfs::relative(e.path(), root).string());
          break;
        }
      }
    }
  }
  EXPECT_EQ(found, std::vector<std::string>{"fs/ceph/rbd_volume.cc"});
}

}  // namespace
}  // namespace cmkfs::fs
