// Wire format of the control socket between cmkctl and the daemon.
//
// Every message is one frame: a u32 little-endian payload length, then the
// payload (at most kMaxFrameBytes).
//   request payload: u32 argc (at most kMaxArgs), then argc times
//                    { u32 length, bytes }
//   reply payload:   i32 exit code, { u32 length, stdout bytes },
//                    { u32 length, stderr bytes }
// The parsers are strict: every length is checked against what remains,
// trailing bytes are refused, and every failure is InvalidArgument.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cmkfs/cli.h"
#include "cmkfs/status.h"

namespace cmkfs::cli {

constexpr uint32_t kMaxFrameBytes = 1u << 20;
constexpr uint32_t kMaxArgs = 256;

// Payloads (without the frame header).
Result<std::string> EncodeControlRequest(const std::vector<std::string>& args);
Result<std::vector<std::string>> ParseControlRequest(std::string_view payload);
// Out and err are truncated so the frame fits kMaxFrameBytes.
std::string EncodeControlReply(const CommandOutput& reply);
Result<CommandOutput> ParseControlReply(std::string_view payload);

// Prepends the u32 LE length.
std::string Frame(std::string_view payload);
// Reads one frame from a blocking stream socket. InvalidArgument when the
// announced length exceeds kMaxFrameBytes; IOError on a short read.
Result<std::string> ReadFrame(int fd);
// Collects one frame from a non-blocking stream socket as its bytes arrive
// (the daemon reads requests without a thread per connection).
class FrameReader {
 public:
  // Reads what `fd` has now. True once the whole frame is in (then
  // payload() holds it); false while more is to come. InvalidArgument for an
  // announced length over kMaxFrameBytes; IOError when the peer closed first.
  Result<bool> ReadAvailable(int fd);
  std::string& payload() { return payload_; }

 private:
  std::string header_;
  std::string payload_;
  uint32_t length_ = 0;
  bool have_length_ = false;
};

// Writes all of `frame` (MSG_NOSIGNAL: a vanished peer is an IOError).
Status WriteAll(int fd, std::string_view bytes);

}  // namespace cmkfs::cli
