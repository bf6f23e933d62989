// One reference to gRPC's library state, for the objects of the transport
// that own gRPC objects.
#pragma once

#include <grpc/grpc.h>

namespace cmkfs::vault {

// grpc_init on construction; destroying the last reference shuts gRPC down
// on the destroying thread and joins its threads (grpc_shutdown_blocking).
// Without it the last reference may be dropped on one of gRPC's own threads,
// which then shuts down asynchronously: its threads may still run while the
// process exits, after OpenSSL's atexit handler freed the state they use
// (LeakSanitizer then reports their error queues; grpc/grpc#38539). Declare
// it as the first member of the owner, so it is released after the gRPC
// objects. Never destroy the owner on a gRPC callback thread.
class GrpcLibraryRef {
 public:
  GrpcLibraryRef() { grpc_init(); }
  ~GrpcLibraryRef() { grpc_shutdown_blocking(); }
  GrpcLibraryRef(const GrpcLibraryRef&) = delete;
  GrpcLibraryRef& operator=(const GrpcLibraryRef&) = delete;
};

}  // namespace cmkfs::vault
