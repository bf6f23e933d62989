#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <mutex>

#include "keystore_test_util.h"

namespace cmkfs::keystore::testing {
namespace {

void WriteText(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
}

SoftHsm* MakeSoftHsm() {
  auto* hsm = new SoftHsm;
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "cmkfs-softhsm-XXXXXX")
          .string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return hsm;
  }
  hsm->dir = tmpl;
  std::filesystem::create_directories(hsm->dir / "tokens");
  WriteText(hsm->dir / "softhsm2.conf",
            "directories.tokendir = " + (hsm->dir / "tokens").string() +
                "\nobjectstore.backend = file\nlog.level = ERROR\n");
  ::setenv("SOFTHSM2_CONF", (hsm->dir / "softhsm2.conf").c_str(), 1);
  for (const char* label : {"cmkfs", "cmkfs-other"}) {
    Run(std::string("softhsm2-util --init-token --free --label ") + label +
        " --pin 1234 --so-pin 5678 >/dev/null");
  }
  // PIN files must be private (cmkfs/file_trust.h).
  WriteText(hsm->dir / "user.pin", "1234\n");
  WriteText(hsm->dir / "wrong.pin", "9999\n");
  ::chmod((hsm->dir / "user.pin").c_str(), 0600);
  ::chmod((hsm->dir / "wrong.pin").c_str(), 0600);
  hsm->token.module = "/usr/lib/softhsm/libsofthsm2.so";
  hsm->token.token_label = "cmkfs";
  hsm->token.pin_file = hsm->dir / "user.pin";
  hsm->other_token = hsm->token;
  hsm->other_token.token_label = "cmkfs-other";
  hsm->wrong_pin_file = hsm->dir / "wrong.pin";
  // The token directory goes with the process.
  static std::filesystem::path to_remove;
  to_remove = hsm->dir;
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(to_remove, ec);
  });
  return hsm;
}

}  // namespace

const SoftHsm& SoftHsmTokens() {
  static SoftHsm* hsm = MakeSoftHsm();
  return *hsm;
}

}  // namespace cmkfs::keystore::testing
