// Fuzzes the control-socket wire format (cli/control_protocol.h): the
// request and reply payload parsers and the frame reader on a real socket.
// Invariants: no crash or sanitizer report, every failure is
// InvalidArgument (IOError for a short frame), and what parses re-encodes to
// the same bytes (the parsers are strict).
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control_protocol.h"
#include "fuzz_check.h"

namespace cli = cmkfs::cli;

namespace {

void FuzzFrameReader(std::string_view bytes) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return;
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = write(fds[1], bytes.data() + written, bytes.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  shutdown(fds[1], SHUT_WR);
  auto frame = cli::ReadFrame(fds[0]);
  FuzzReport(frame.ok());
  if (frame.ok()) {
    FUZZ_CHECK(frame->size() <= cli::kMaxFrameBytes, "oversized frame");
    FUZZ_CHECK(bytes.substr(0, 4 + frame->size()) == cli::Frame(*frame),
               "frame does not match its bytes");
  } else {
    auto kind = frame.status().kind();
    FUZZ_CHECK(kind == cmkfs::ErrorKind::kInvalidArgument ||
                   kind == cmkfs::ErrorKind::kIOError,
               "frame reader failed with an unexpected kind");
  }
  close(fds[0]);
  close(fds[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto args = cli::ParseControlRequest(payload);
      FuzzReport(args.ok());
      if (args.ok()) {
        FUZZ_CHECK(args->size() <= cli::kMaxArgs, "too many args accepted");
        auto again = cli::EncodeControlRequest(*args);
        FUZZ_CHECK(again.ok(), "parsed request does not re-encode");
        FUZZ_CHECK(*again == payload, "request parser is not strict");
      } else {
        FUZZ_CHECK(args.status().kind() == cmkfs::ErrorKind::kInvalidArgument,
                   "request parser failed with another kind");
      }
      break;
    }
    case 1: {
      auto reply = cli::ParseControlReply(payload);
      FuzzReport(reply.ok());
      if (reply.ok()) {
        FUZZ_CHECK(cli::EncodeControlReply(*reply) == payload,
                   "reply parser is not strict");
      } else {
        FUZZ_CHECK(reply.status().kind() == cmkfs::ErrorKind::kInvalidArgument,
                   "reply parser failed with another kind");
      }
      break;
    }
    case 2:
      FuzzFrameReader(payload);
      break;
  }
  return 0;
}
