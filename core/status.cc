#include "cmkfs/status.h"

#include <cerrno>
#include <cstring>

namespace cmkfs {

std::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kOk:
      return "OK";
    case ErrorKind::kNotFound:
      return "NotFound";
    case ErrorKind::kInvalidArgument:
      return "InvalidArgument";
    case ErrorKind::kAlreadyExists:
      return "AlreadyExists";
    case ErrorKind::kPermissionDenied:
      return "PermissionDenied";
    case ErrorKind::kKeyUnavailable:
      return "KeyUnavailable";
    case ErrorKind::kCorruption:
      return "Corruption";
    case ErrorKind::kIOError:
      return "IOError";
    case ErrorKind::kNoSpace:
      return "NoSpace";
    case ErrorKind::kBusy:
      return "Busy";
    case ErrorKind::kReadOnly:
      return "ReadOnly";
    case ErrorKind::kNotSupported:
      return "NotSupported";
    case ErrorKind::kOutOfRange:
      return "OutOfRange";
    case ErrorKind::kCancelled:
      return "Cancelled";
    case ErrorKind::kFailedPrecondition:
      return "FailedPrecondition";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(ErrorKindName(kind_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(kind_, std::move(m));
}

Status ErrnoError(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return NoSpaceError(std::move(m));
  return IOError(std::move(m));
}

int ToErrno(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kOk:
      return 0;
    case ErrorKind::kNotFound:
      return ENOENT;
    case ErrorKind::kInvalidArgument:
      return EINVAL;
    case ErrorKind::kAlreadyExists:
      return EEXIST;
    case ErrorKind::kPermissionDenied:
      return EACCES;
    case ErrorKind::kKeyUnavailable:
      return EIO;
    case ErrorKind::kCorruption:
      return EIO;
    case ErrorKind::kIOError:
      return EIO;
    case ErrorKind::kNoSpace:
      return ENOSPC;
    case ErrorKind::kBusy:
      return EBUSY;
    case ErrorKind::kReadOnly:
      return EROFS;
    case ErrorKind::kNotSupported:
      return EOPNOTSUPP;
    case ErrorKind::kOutOfRange:
      return EFBIG;
    case ErrorKind::kCancelled:
      return EINTR;
    case ErrorKind::kFailedPrecondition:
      return EIO;
  }
  return EIO;
}

}  // namespace cmkfs
