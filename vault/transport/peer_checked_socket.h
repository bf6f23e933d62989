// The unix-socket front of cmkvault when other local users may call it
// (docs/vault-api.md, "Transport"): the kernel names each peer (SO_PEERCRED)
// and only the uids the service was told of get through. gRPC's C++ API
// shows no peer credentials, so the check happens here, before gRPC: an
// admitted connection is relayed byte for byte to the gRPC server's own
// socket, which only the service's user can connect to. The TLS session
// runs end to end through the relay, which sees only ciphertext; the caller
// is still the certificate.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "cmkfs/status.h"

namespace cmkfs::vault {

class PeerCheckedSocket {
 public:
  // Listens on `path` (mode 0666: the uid check is the gate; a socket file
  // left there is replaced, anything else is an error) and relays admitted
  // connections to the unix socket `inner`. Admitted: root, the service's
  // own uid, and `allowed_uids`; anyone else is logged (uid and pid) and
  // closed before a byte is read. IOError naming `path` when it cannot
  // listen.
  static Result<std::unique_ptr<PeerCheckedSocket>> Start(
      const std::filesystem::path& path, const std::filesystem::path& inner,
      std::vector<uid_t> allowed_uids);

  // Stops accepting, ends every relay, removes `path`.
  virtual ~PeerCheckedSocket() = default;
};

}  // namespace cmkfs::vault
