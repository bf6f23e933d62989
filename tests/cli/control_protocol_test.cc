#include "control_protocol.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cmkfs::cli {
namespace {

std::string U32(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i)
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

TEST(ControlProtocolTest, RequestRoundTrip) {
  std::vector<std::string> args = {
      "disk", "create", "d1", "--size", "64M", "", std::string("nul\0byte", 8)};
  auto payload = EncodeControlRequest(args);
  ASSERT_TRUE(payload.ok());
  auto parsed = ParseControlRequest(*payload);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(*parsed, args);
}

TEST(ControlProtocolTest, EmptyRequestIsValid) {
  auto parsed = ParseControlRequest(U32(0));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

TEST(ControlProtocolTest, RefusesTruncatedRequests) {
  std::string good = *EncodeControlRequest({"key", "list", "vault1"});
  for (size_t len = 0; len < good.size(); ++len) {
    auto parsed = ParseControlRequest(std::string_view(good).substr(0, len));
    ASSERT_FALSE(parsed.ok()) << "prefix of " << len << " bytes";
    EXPECT_EQ(parsed.status().kind(), ErrorKind::kInvalidArgument);
  }
}

TEST(ControlProtocolTest, RefusesTrailingBytes) {
  std::string good = *EncodeControlRequest({"fsck"});
  auto parsed = ParseControlRequest(good + "x");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("trailing"), std::string::npos);
}

TEST(ControlProtocolTest, RefusesTooManyArguments) {
  std::vector<std::string> args(kMaxArgs + 1, "a");
  EXPECT_FALSE(EncodeControlRequest(args).ok());
  std::string payload = U32(kMaxArgs + 1);
  for (uint32_t i = 0; i < kMaxArgs + 1; ++i) payload += U32(1) + "a";
  auto parsed = ParseControlRequest(payload);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("at most 256"), std::string::npos);
  std::vector<std::string> max_args(kMaxArgs, "a");
  EXPECT_TRUE(ParseControlRequest(*EncodeControlRequest(max_args)).ok());
}

TEST(ControlProtocolTest, RefusesHugeCountsAndLengthsWithoutAllocating) {
  // argc claims 256 args but there are no bytes for them.
  EXPECT_FALSE(ParseControlRequest(U32(256)).ok());
  // An argument length past the end of the payload.
  EXPECT_FALSE(ParseControlRequest(U32(1) + U32(0xffffffffu) + "abc").ok());
  EXPECT_FALSE(ParseControlRequest(U32(0xffffffffu)).ok());
}

TEST(ControlProtocolTest, RefusesOversizedPayload) {
  std::string big =
      U32(1) + U32(kMaxFrameBytes) + std::string(kMaxFrameBytes, 'x');
  auto parsed = ParseControlRequest(big);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().kind(), ErrorKind::kInvalidArgument);
  EXPECT_FALSE(EncodeControlRequest({std::string(kMaxFrameBytes, 'x')}).ok());
}

TEST(ControlProtocolTest, ReplyRoundTripAndTruncation) {
  CommandOutput reply{2, "table\n", "cmkctl: bad\n"};
  auto parsed = ParseControlReply(EncodeControlReply(reply));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->exit_code, 2);
  EXPECT_EQ(parsed->out, "table\n");
  EXPECT_EQ(parsed->err, "cmkctl: bad\n");
  std::string payload = EncodeControlReply(reply);
  for (size_t len = 0; len < payload.size(); ++len) {
    EXPECT_FALSE(ParseControlReply(payload.substr(0, len)).ok());
  }
  CommandOutput huge{0, std::string(2 * kMaxFrameBytes, 'o'), "e"};
  std::string encoded = EncodeControlReply(huge);
  EXPECT_LE(encoded.size(), kMaxFrameBytes);
  auto back = ParseControlReply(encoded);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->err, "e");
}

TEST(ControlProtocolTest, ReadFrameRefusesOversizedAndTruncatedFrames) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::string header = U32(kMaxFrameBytes + 1);
  ASSERT_TRUE(WriteAll(sv[0], header).ok());
  auto frame = ReadFrame(sv[1]);
  ASSERT_FALSE(frame.ok());
  EXPECT_EQ(frame.status().kind(), ErrorKind::kInvalidArgument);

  ASSERT_TRUE(WriteAll(sv[0], U32(10) + "short").ok());
  ::close(sv[0]);
  frame = ReadFrame(sv[1]);
  ASSERT_FALSE(frame.ok());
  EXPECT_EQ(frame.status().kind(), ErrorKind::kIOError);
  ::close(sv[1]);
}

TEST(ControlProtocolTest, ReadFrameReadsWhatFrameWrites) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_TRUE(WriteAll(sv[0], Frame("hello")).ok());
  auto frame = ReadFrame(sv[1]);
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(*frame, "hello");
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace cmkfs::cli
