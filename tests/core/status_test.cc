#include "cmkfs/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>

namespace cmkfs {
namespace {

TEST(Status, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.kind(), ErrorKind::kOk);
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(Status, HelpersSetKindNameAndErrno) {
  struct Case {
    Status status;
    std::string_view name;
    int err;
  };
  const Case cases[] = {
      {NotFoundError("m"), "NotFound", ENOENT},
      {InvalidArgumentError("m"), "InvalidArgument", EINVAL},
      {AlreadyExistsError("m"), "AlreadyExists", EEXIST},
      {PermissionDeniedError("m"), "PermissionDenied", EACCES},
      {KeyUnavailableError("m"), "KeyUnavailable", EIO},
      {CorruptionError("m"), "Corruption", EIO},
      {IOError("m"), "IOError", EIO},
      {NoSpaceError("m"), "NoSpace", ENOSPC},
      {BusyError("m"), "Busy", EBUSY},
      {ReadOnlyError("m"), "ReadOnly", EROFS},
      {NotSupportedError("m"), "NotSupported", EOPNOTSUPP},
      {OutOfRangeError("m"), "OutOfRange", EFBIG},
      {CancelledError("m"), "Cancelled", EINTR},
      {FailedPreconditionError("m"), "FailedPrecondition", EIO},
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(ErrorKindName(c.status.kind()), c.name);
    EXPECT_EQ(c.status.ToString(), std::string(c.name) + ": m");
    EXPECT_EQ(ToErrno(c.status), c.err) << c.name;
  }
  EXPECT_EQ(ToErrno(ErrorKind::kOk), 0);
}

TEST(Status, WithContextPrefixesMessageAndKeepsKind) {
  Status s = NotFoundError("key k1 not found").WithContext("vault v1");
  EXPECT_EQ(s.kind(), ErrorKind::kNotFound);
  EXPECT_EQ(s.message(), "vault v1: key k1 not found");
  EXPECT_TRUE(Status::Ok().WithContext("ctx").ok());
}

TEST(Status, ErrnoErrorMapsSpaceErrorsToNoSpace) {
  Status s = ErrnoError("write /x", ENOSPC);
  EXPECT_EQ(s.kind(), ErrorKind::kNoSpace);
  EXPECT_EQ(s.message(), "write /x: No space left on device");
  EXPECT_EQ(ErrnoError("write /x", EDQUOT).kind(), ErrorKind::kNoSpace);
  EXPECT_EQ(ErrnoError("read /x", EIO).kind(), ErrorKind::kIOError);
}

TEST(Result, HoldsValueOrStatus) {
  Result<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
  EXPECT_TRUE(v.status().ok());
  Result<int> e = BusyError("locked");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().kind(), ErrorKind::kBusy);
  Result<int> from_ok = Status::Ok();
  EXPECT_FALSE(from_ok.ok());
  EXPECT_EQ(from_ok.status().kind(), ErrorKind::kFailedPrecondition);
  Result<std::unique_ptr<int>> moved = std::make_unique<int>(3);
  std::unique_ptr<int> p = std::move(moved).value();
  EXPECT_EQ(*p, 3);
}

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  CMKFS_ASSIGN_OR_RETURN(int h, Half(x));
  CMKFS_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  CMKFS_RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(Macros, PropagateTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_EQ(Quarter(3).status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_EQ(CheckEven(3).kind(), ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace cmkfs
