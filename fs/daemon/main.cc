#include "daemon.h"

int main(int argc, char** argv) {
  return cmkfs::daemon::DaemonMain(argc, argv, CMKFS_VERSION);
}
