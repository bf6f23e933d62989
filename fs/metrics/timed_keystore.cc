#include "timed_keystore.h"

#include <chrono>
#include <utility>

#include "cmkfs/forwarding_keystore.h"

namespace cmkfs::metrics {
namespace {

using keystore::KeyId;

class TimedKeyStore final : public keystore::ForwardingKeyStore {
 public:
  TimedKeyStore(std::unique_ptr<keystore::KeyStore> inner, KeyStoreMetrics m)
      : ForwardingKeyStore(std::move(inner)), m_(m) {}

  Result<std::vector<uint8_t>> WrapKey(std::string_view caller, const KeyId& id,
                                       std::span<const uint8_t> plaintext,
                                       std::span<const uint8_t> label,
                                       keystore::WrapAlgorithm alg) override {
    const auto start = std::chrono::steady_clock::now();
    auto r = inner().WrapKey(caller, id, plaintext, label, alg);
    Record(start, r.ok() ? Status::Ok() : r.status(), m_.wrap_seconds,
           m_.wrap_errors);
    return r;
  }
  Result<crypto::SecretBytes> UnwrapKey(std::string_view caller,
                                        const KeyId& id,
                                        std::span<const uint8_t> blob,
                                        std::span<const uint8_t> label,
                                        keystore::WrapAlgorithm alg) override {
    const auto start = std::chrono::steady_clock::now();
    auto r = inner().UnwrapKey(caller, id, blob, label, alg);
    Record(start, r.ok() ? Status::Ok() : r.status(), m_.unwrap_seconds,
           m_.unwrap_errors);
    return r;
  }

 private:
  static void Record(std::chrono::steady_clock::time_point start,
                     const Status& s, Histogram* seconds,
                     Family<Counter>* errors) {
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    if (seconds != nullptr) seconds->Observe(took.count());
    if (!s.ok() && errors != nullptr)
      errors->With({std::string(ErrorKindName(s.kind()))}).Inc();
  }

  const KeyStoreMetrics m_;
};

}  // namespace

std::unique_ptr<keystore::KeyStore> MakeTimedKeyStore(
    std::unique_ptr<keystore::KeyStore> inner, KeyStoreMetrics metrics) {
  return std::make_unique<TimedKeyStore>(std::move(inner), metrics);
}

}  // namespace cmkfs::metrics
