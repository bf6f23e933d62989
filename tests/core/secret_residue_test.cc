// Key bytes must not outlive their use: neither on the stack of the thread
// that used them (a stale frame stays in the thread's stack, and in glibc's
// cache of stacks after the thread ends, until something happens to
// overwrite it), nor in heap blocks OpenSSL frees. Each test runs one key
// path (open a disk's key, re-wrap it, unwrap with the vault's private key)
// on a thread whose stack is a mapping the test owns, then searches that
// whole stack for the key bytes: deterministic, whatever other threads do.
#include <gtest/gtest.h>
#include <pthread.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cmkfs/crypto.h"

namespace cmkfs::crypto {
namespace {

constexpr size_t kStackSize = 1 << 20;

// Runs `fn` on a fresh thread whose stack is `stack` (zero-filled first).
void RunOnStack(void* stack, const std::function<void()>& fn) {
  std::memset(stack, 0, kStackSize);
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstack(&attr, stack, kStackSize), 0);
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, trampoline,
                           const_cast<std::function<void()>*>(&fn)),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

// Offsets (from the top of the stack, where frames start) of each copy of
// `needle` in `stack`.
std::vector<size_t> Find(const void* stack, std::span<const uint8_t> needle) {
  std::vector<size_t> hits;
  const auto* base = static_cast<const uint8_t*>(stack);
  const uint8_t* end = base + kStackSize;
  for (const uint8_t* p = base; p + needle.size() <= end;) {
    const void* hit = memmem(p, end - p, needle.data(), needle.size());
    if (hit == nullptr) break;
    const auto* h = static_cast<const uint8_t*>(hit);
    hits.push_back(static_cast<size_t>(end - h));
    p = h + 1;
  }
  return hits;
}

std::string Describe(const std::vector<size_t>& hits) {
  std::string s;
  for (size_t h : hits) s += " " + std::to_string(h);
  return s;
}

class SecretResidue : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    ASSERT_NE(stack_, MAP_FAILED);
    auto key = RsaKey::Generate(2048);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    auto der = key->PrivateDer();
    ASSERT_TRUE(der.ok());
    der_ = std::move(*der);
    auto parts = key->PrivateComponents();
    ASSERT_TRUE(parts.ok());
    prime1_ = std::move(parts->prime1);
    auto dek = RandomSecret(kXtsKeySize);
    ASSERT_TRUE(dek.ok());
    dek_ = std::move(*dek);
    auto blob = key->Wrap(dek_.span(), label());
    ASSERT_TRUE(blob.ok());
    wrapped_ = std::move(*blob);
    auto master = RandomSecret(32);
    ASSERT_TRUE(master.ok());
    master_ = std::move(*master);
    auto sealed = AeadSeal(master_, der_.span(), label());
    ASSERT_TRUE(sealed.ok());
    sealed_der_ = std::move(*sealed);
  }
  void TearDown() override { munmap(stack_, kStackSize); }

  static std::span<const uint8_t> label() {
    static const char kLabel[] = "cmkfs-dek:test";
    return {reinterpret_cast<const uint8_t*>(kLabel), sizeof(kLabel) - 1};
  }

  // No copy of the DEK, an XTS half, the private key DER or its first prime
  // may be left on the thread's stack.
  void ExpectNoKeyOnStack(const std::string& path) {
    const std::span<const uint8_t> dek = dek_.span();
    const struct {
      const char* what;
      std::span<const uint8_t> bytes;
    } needles[] = {{"the DEK", dek},
                   {"XTS half 1", dek.first(32)},
                   {"XTS half 2", dek.last(32)},
                   {"the private key DER", der_.span()},
                   {"the private key's prime", prime1_.span()}};
    for (const auto& n : needles) {
      const std::vector<size_t> hits = Find(stack_, n.bytes);
      EXPECT_TRUE(hits.empty())
          << path << " left " << hits.size() << " copies of " << n.what
          << " on the thread's stack, at bytes below its top:"
          << Describe(hits);
    }
  }

  void* stack_ = nullptr;
  SecretBytes der_;
  SecretBytes prime1_;
  SecretBytes dek_;
  SecretBytes master_;
  std::vector<uint8_t> wrapped_;
  std::vector<uint8_t> sealed_der_;
};

TEST_F(SecretResidue, OpenSslFreesAreWiped) {
  EXPECT_TRUE(OpenSslFreesAreWiped())
      << "OpenSSL allocated before cmkfs installed its wiping memory "
         "functions: freed OpenSSL blocks may keep key bytes";
}

// The software backend's unwrap: open the sealed private key, decode it,
// RSA-OAEP-unwrap the DEK.
TEST_F(SecretResidue, UnwrapLeavesNoKeyOnTheStack) {
  bool ok = false;
  RunOnStack(stack_, [&] {
    auto der = AeadOpen(master_, sealed_der_, label());
    if (!der.ok()) return;
    auto key = RsaKey::FromPrivateDer(der->span());
    if (!key.ok()) return;
    auto dek = key->Unwrap(wrapped_, label());
    ok = dek.ok() && ConstantTimeEquals(dek->span(), dek_.span());
  });
  ASSERT_TRUE(ok) << "the unwrap itself failed";
  ExpectNoKeyOnStack("an unwrap");
}

// Opening a disk's cipher, I/O through it, closing it.
TEST_F(SecretResidue, CipherLifetimeLeavesNoKeyOnTheStack) {
  bool ok = false;
  RunOnStack(stack_, [&] {
    auto cipher = XtsCipher::Create(dek_);
    if (!cipher.ok()) return;
    std::vector<uint8_t> data(4 * kSectorSize, 0x5a);
    ok = (*cipher)
             ->EncryptSectors(7, data.data(), data.data(), data.size())
             .ok() &&
         (*cipher)
             ->DecryptSectors(7, data.data(), data.data(), data.size())
             .ok() &&
         data[0] == 0x5a;
  });
  ASSERT_TRUE(ok) << "the cipher itself failed";
  ExpectNoKeyOnStack("a cipher's lifetime");
}

// Re-wrapping a DEK (key rotation) and parsing a PEM private key (import).
TEST_F(SecretResidue, RewrapAndImportLeaveNoKeyOnTheStack) {
  auto key = RsaKey::FromPrivateDer(der_.span());
  ASSERT_TRUE(key.ok());
  auto pub_der = key->PublicDer();
  ASSERT_TRUE(pub_der.ok());
  bool ok = false;
  RunOnStack(stack_, [&] {
    auto pub = RsaKey::FromPublicDer(*pub_der);
    if (!pub.ok()) return;
    auto blob = pub->Wrap(dek_.span(), label());
    if (!blob.ok()) return;
    auto again = RsaKey::FromPrivateDer(der_.span());
    if (!again.ok()) return;
    auto der = again->PrivateDer();
    ok = der.ok() && ConstantTimeEquals(der->span(), der_.span());
  });
  ASSERT_TRUE(ok) << "the re-wrap or re-encode itself failed";
  ExpectNoKeyOnStack("a re-wrap and a private-key round trip");
}

// Without the budget to lock it, a secret still works (and is wiped), and
// the first failure of the process is logged once, naming the limit.
TEST(SecretBytesLock, FailedMlockIsWarnedOnceNamingTheLimit) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    // Root's CAP_IPC_LOCK ignores the limit: drop to nobody first.
    if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0) _exit(3);
    struct rlimit lim {};
    getrlimit(RLIMIT_MEMLOCK, &lim);
    lim.rlim_cur = 0;
    if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) _exit(4);
    std::ostringstream log;
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_st>(log)));
    SecretBytes a(100);
    SecretBytes b(5000);
    const bool unlocked = !a.locked() && !b.locked();
    a.data()[99] = 1;
    spdlog::default_logger()->flush();
    std::string text = (unlocked ? "unlocked\n" : "locked\n") + log.str();
    if (write(fds[1], text.data(), text.size()) < 0) _exit(5);
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child failed with status " << status;
  EXPECT_EQ(out.rfind("unlocked\n", 0), 0u) << out;
  size_t warnings = 0;
  for (size_t at = 0; (at = out.find("cannot mlock", at)) != std::string::npos;
       ++at) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << out;
  EXPECT_NE(out.find("ulimit -l"), std::string::npos) << out;
  EXPECT_NE(out.find("0 KiB"), std::string::npos) << out;
}

}  // namespace
}  // namespace cmkfs::crypto
