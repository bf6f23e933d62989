#include "control_protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace cmkfs::cli {
namespace {

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(std::string_view b) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(static_cast<unsigned char>(b[i])) << (8 * i);
  }
  return v;
}

// Consumes from the front of a payload, refusing to read past its end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool U32(uint32_t* v) {
    if (data_.size() < 4) return false;
    *v = GetU32(data_);
    data_.remove_prefix(4);
    return true;
  }
  bool Bytes(std::string* s) {
    uint32_t len;
    if (!U32(&len) || len > data_.size()) return false;
    s->assign(data_.substr(0, len));
    data_.remove_prefix(len);
    return true;
  }
  size_t remaining() const { return data_.size(); }

 private:
  std::string_view data_;
};

void PutBytes(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

}  // namespace

Result<std::string> EncodeControlRequest(const std::vector<std::string>& args) {
  if (args.size() > kMaxArgs) {
    return InvalidArgumentError("too many arguments (" +
                                std::to_string(args.size()) + "); at most " +
                                std::to_string(kMaxArgs) + " are accepted");
  }
  std::string out;
  PutU32(out, static_cast<uint32_t>(args.size()));
  for (const auto& a : args) {
    if (a.size() > kMaxFrameBytes) {
      return InvalidArgumentError("argument too long for the control socket");
    }
    PutBytes(out, a);
  }
  if (out.size() > kMaxFrameBytes) {
    return InvalidArgumentError(
        "command too long for the control socket (at most 1 MiB)");
  }
  return out;
}

Result<std::vector<std::string>> ParseControlRequest(std::string_view payload) {
  if (payload.size() > kMaxFrameBytes) {
    return InvalidArgumentError("control request larger than 1 MiB");
  }
  Reader r(payload);
  uint32_t argc;
  if (!r.U32(&argc)) {
    return InvalidArgumentError("control request truncated: no argument count");
  }
  if (argc > kMaxArgs) {
    return InvalidArgumentError("control request has " + std::to_string(argc) +
                                " arguments; at most " +
                                std::to_string(kMaxArgs) + " are accepted");
  }
  // Each argument needs at least its 4-byte length.
  if (static_cast<uint64_t>(argc) * 4 > r.remaining()) {
    return InvalidArgumentError(
        "control request truncated: " + std::to_string(argc) +
        " arguments announced, too few bytes");
  }
  std::vector<std::string> args;
  args.reserve(argc);
  for (uint32_t i = 0; i < argc; ++i) {
    std::string a;
    if (!r.Bytes(&a)) {
      return InvalidArgumentError("control request truncated in argument " +
                                  std::to_string(i));
    }
    args.push_back(std::move(a));
  }
  if (r.remaining() != 0) {
    return InvalidArgumentError("control request has " +
                                std::to_string(r.remaining()) +
                                " trailing bytes");
  }
  return args;
}

std::string EncodeControlReply(const CommandOutput& reply) {
  constexpr size_t kHeader = 12;
  std::string_view out = reply.out;
  std::string_view err = reply.err;
  const size_t budget = kMaxFrameBytes - kHeader;
  if (out.size() + err.size() > budget) {
    err = err.substr(0, std::min<size_t>(err.size(), 64 << 10));
    out = out.substr(0, budget - err.size());
  }
  std::string payload;
  PutU32(payload, static_cast<uint32_t>(reply.exit_code));
  PutBytes(payload, out);
  PutBytes(payload, err);
  return payload;
}

Result<CommandOutput> ParseControlReply(std::string_view payload) {
  if (payload.size() > kMaxFrameBytes) {
    return InvalidArgumentError("control reply larger than 1 MiB");
  }
  Reader r(payload);
  uint32_t code;
  CommandOutput reply;
  if (!r.U32(&code) || !r.Bytes(&reply.out) || !r.Bytes(&reply.err)) {
    return InvalidArgumentError("control reply truncated");
  }
  if (r.remaining() != 0) {
    return InvalidArgumentError("control reply has trailing bytes");
  }
  reply.exit_code = static_cast<int>(code);
  return reply;
}

std::string Frame(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

namespace {

// Reads exactly n bytes; `what` names the part for the error.
Status ReadExact(int fd, char* buf, size_t n, std::string_view what) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::read(fd, buf + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("control socket read", errno);
    }
    if (r == 0) {
      return IOError("control socket closed by peer in the middle of the " +
                     std::string(what));
    }
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadFrame(int fd) {
  char header[4];
  CMKFS_RETURN_IF_ERROR(ReadExact(fd, header, 4, "frame header"));
  uint32_t len = GetU32(std::string_view(header, 4));
  if (len > kMaxFrameBytes) {
    return InvalidArgumentError("control frame of " + std::to_string(len) +
                                " bytes; at most 1 MiB is accepted");
  }
  std::string payload(len, '\0');
  CMKFS_RETURN_IF_ERROR(ReadExact(fd, payload.data(), len, "frame"));
  return payload;
}

Result<bool> FrameReader::ReadAvailable(int fd) {
  for (;;) {
    std::string& part = have_length_ ? payload_ : header_;
    size_t total = have_length_ ? length_ : 4;
    if (part.size() == total) {
      if (have_length_) return true;
      length_ = GetU32(header_);
      if (length_ > kMaxFrameBytes) {
        return InvalidArgumentError("control frame of " +
                                    std::to_string(length_) +
                                    " bytes; at most 1 MiB is accepted");
      }
      have_length_ = true;
      continue;
    }
    size_t have = part.size();
    part.resize(total);
    ssize_t r = ::recv(fd, part.data() + have, total - have, MSG_DONTWAIT);
    part.resize(have + (r > 0 ? static_cast<size_t>(r) : 0));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      return ErrnoError("control socket read", errno);
    }
    if (r == 0) {
      return IOError("control socket closed by peer before a whole request");
    }
  }
}

Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t w = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("control socket write", errno);
    }
    bytes.remove_prefix(static_cast<size_t>(w));
  }
  return Status::Ok();
}

}  // namespace cmkfs::cli
