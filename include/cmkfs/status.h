// The one error model of cmkfs: a Status with a kind and a one-line message,
// and Result<T> carrying either a value or a non-ok Status. Converted to errno
// only at the FUSE edge (ToErrno).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace cmkfs {

enum class ErrorKind {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kAlreadyExists,
  kPermissionDenied,
  kKeyUnavailable,  // the key that protects the data cannot be used now
  kCorruption,
  kIOError,
  kNoSpace,
  kBusy,
  kReadOnly,            // write to a read-only resource (snapshot, image)
  kNotSupported,        // a valid request this build or configuration cannot do
  kOutOfRange,          // offset or length outside the resource
  kCancelled,           // the user interrupted the operation
  kFailedPrecondition,  // the system is not in a state that allows this
};

// Stable, human-readable name of a kind ("NotFound", ...).
std::string_view ErrorKindName(ErrorKind kind);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorKind kind, std::string message)
      : kind_(kind), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return kind_ == ErrorKind::kOk; }
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  // "Kind: message", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "context: message"; the kind is kept.
  Status WithContext(std::string_view context) const;

  // Explicitly discards a status where ignoring it is the intent.
  void IgnoreError() const {}

 private:
  ErrorKind kind_ = ErrorKind::kOk;
  std::string message_;
};

inline Status NotFoundError(std::string m) {
  return {ErrorKind::kNotFound, std::move(m)};
}
inline Status InvalidArgumentError(std::string m) {
  return {ErrorKind::kInvalidArgument, std::move(m)};
}
inline Status AlreadyExistsError(std::string m) {
  return {ErrorKind::kAlreadyExists, std::move(m)};
}
inline Status PermissionDeniedError(std::string m) {
  return {ErrorKind::kPermissionDenied, std::move(m)};
}
inline Status KeyUnavailableError(std::string m) {
  return {ErrorKind::kKeyUnavailable, std::move(m)};
}
inline Status CorruptionError(std::string m) {
  return {ErrorKind::kCorruption, std::move(m)};
}
inline Status IOError(std::string m) {
  return {ErrorKind::kIOError, std::move(m)};
}
inline Status NoSpaceError(std::string m) {
  return {ErrorKind::kNoSpace, std::move(m)};
}
inline Status BusyError(std::string m) {
  return {ErrorKind::kBusy, std::move(m)};
}
inline Status ReadOnlyError(std::string m) {
  return {ErrorKind::kReadOnly, std::move(m)};
}
inline Status NotSupportedError(std::string m) {
  return {ErrorKind::kNotSupported, std::move(m)};
}
inline Status OutOfRangeError(std::string m) {
  return {ErrorKind::kOutOfRange, std::move(m)};
}
inline Status CancelledError(std::string m) {
  return {ErrorKind::kCancelled, std::move(m)};
}
inline Status FailedPreconditionError(std::string m) {
  return {ErrorKind::kFailedPrecondition, std::move(m)};
}
// IOError from a failed system call: "what: strerror(err)"; ENOSPC and EDQUOT
// become kNoSpace.
Status ErrnoError(std::string_view what, int err);

// The single errno mapping, used by the FUSE adapter only.
int ToErrno(ErrorKind kind);
inline int ToErrno(const Status& s) { return ToErrno(s.kind()); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) {
      v_ = Status(ErrorKind::kFailedPrecondition,
                  "internal: Result built from an OK status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cmkfs

#define CMKFS_CONCAT_INNER_(a, b) a##b
#define CMKFS_CONCAT_(a, b) CMKFS_CONCAT_INNER_(a, b)

#define CMKFS_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::cmkfs::Status cmkfs_status_ = (expr);        \
    if (!cmkfs_status_.ok()) return cmkfs_status_; \
  } while (0)

#define CMKFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// CMKFS_ASSIGN_OR_RETURN(auto x, FunctionReturningResult());
#define CMKFS_ASSIGN_OR_RETURN(lhs, expr)                                   \
  CMKFS_ASSIGN_OR_RETURN_IMPL_(CMKFS_CONCAT_(cmkfs_result_, __LINE__), lhs, \
                               expr)
