// Second process of two_process_test: opens the keystore directory given on
// the command line and changes a key.
//   keystore_two_process_helper DIR KEY_FILE disable|enable|delete KEY_ID
#include <cstdio>
#include <string>

#include "cmkfs/keystore.h"

int main(int argc, char** argv) {
  using namespace cmkfs::keystore;
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: %s DIR KEY_FILE disable|enable|delete KEY_ID\n",
                 argv[0]);
    return 2;
  }
  KeyStoreOptions o;
  o.dir = argv[1];
  o.master_key_file = argv[2];
  const std::string action = argv[3];
  auto id = KeyId::Parse(argv[4]);
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
    return 2;
  }
  auto ks = OpenKeyStore(o);
  if (!ks.ok()) {
    std::fprintf(stderr, "%s\n", ks.status().ToString().c_str());
    return 1;
  }
  cmkfs::Status s;
  if (action == "disable" || action == "enable") {
    AttributeUpdate u;
    u.enabled = action == "enable";
    s = (*ks)->UpdateKeyAttributes("", *id, u).status();
  } else if (action == "delete") {
    s = (*ks)->DeleteKey("", id->vault, id->name);
  } else {
    std::fprintf(stderr, "unknown action %s\n", action.c_str());
    return 2;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
