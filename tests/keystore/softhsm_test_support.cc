#include <gtest/gtest.h>

#include "keystore_test_util.h"
#include "test_tokens.h"

namespace cmkfs::keystore::testing {
namespace {

SoftHsm* MakeSoftHsm() {
  auto* hsm = new SoftHsm;
  auto t = test_tokens::Get(test_tokens::Kind::kSoftHsm,
                            test_tokens::Transport::kDirect);
  if (!t.ok()) {
    ADD_FAILURE() << t.status().ToString();
    return hsm;
  }
  hsm->dir = test_tokens::Dir();
  hsm->token = t->config;
  hsm->other_token = t->isolated;
  hsm->wrong_pin_file = t->wrong_pin.pin_file;
  return hsm;
}

}  // namespace

const SoftHsm& SoftHsmTokens() {
  static SoftHsm* hsm = MakeSoftHsm();
  return *hsm;
}

}  // namespace cmkfs::keystore::testing
