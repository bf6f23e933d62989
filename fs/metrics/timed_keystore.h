// A KeyStore that forwards every call to another one and records the
// latency and the failures of WrapKey and UnwrapKey (the DEK unwraps of
// opens and unseals, the wraps of re-wraps) in two histograms and two
// counter families labelled by error kind. Keys pass through untouched; only
// durations and ErrorKindName values are recorded.
#pragma once

#include <memory>

#include "cmkfs/keystore.h"
#include "registry.h"

namespace cmkfs::metrics {

struct KeyStoreMetrics {
  Histogram* unwrap_seconds = nullptr;
  Family<Counter>* unwrap_errors = nullptr;  // label: kind
  Histogram* wrap_seconds = nullptr;
  Family<Counter>* wrap_errors = nullptr;  // label: kind
};

// `metrics` must outlive the returned keystore; it owns `inner`.
std::unique_ptr<keystore::KeyStore> MakeTimedKeyStore(
    std::unique_ptr<keystore::KeyStore> inner, KeyStoreMetrics metrics);

}  // namespace cmkfs::metrics
