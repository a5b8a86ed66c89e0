#include "common/grpc_status.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

TEST(GrpcStatusTest, OkRoundTrips) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(GrpcStatusTest, EveryCodeAndMessageRoundTrips) {
  for (int code = 1; code <= 16; ++code) {
    absl::Status in(static_cast<absl::StatusCode>(code), "field 'x': bad");
    grpc::Status g = ToGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "field 'x': bad");
    EXPECT_EQ(FromGrpcStatus(g), in);
  }
}

TEST(GrpcStatusTest, NamedCodesAgree) {
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("m")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("m")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("m")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(GrpcStatusTest, LongMessagesKeepTheirStartAndEndWithinTheBound) {
  const std::string name(20000, 'n');
  const absl::Status long_status =
      absl::NotFoundError(absl::StrCat("name: no table '", name, "'; tables: [a, b]"));
  const grpc::Status g = ToGrpcStatus(long_status);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_LE(g.error_message().size(), kMaxStatusMessageBytes + 64);
  EXPECT_EQ(g.error_message().rfind("name: no table 'nnn", 0), 0u);
  EXPECT_NE(g.error_message().find("bytes left out"), std::string::npos);
  EXPECT_TRUE(absl::EndsWith(g.error_message(), "'; tables: [a, b]")) << g.error_message();
  // short messages are kept whole; cuts fall between UTF-8 characters
  EXPECT_EQ(ToGrpcStatus(absl::InternalError("short")).error_message(), "short");
  std::string accents;
  for (int i = 0; i < 5000; ++i) accents += "\xc3\xa9";  // é
  const std::string bounded = BoundedStatusMessage(accents);
  const size_t gap = bounded.find(" [... ");
  ASSERT_NE(gap, std::string::npos);
  EXPECT_EQ(gap % 2, 0u);
  EXPECT_EQ((bounded.size() - bounded.find(" ...] ") - 6) % 2, 0u);
}

TEST(GrpcStatusTest, UnimplementedRpcNamesMethodAndBinary) {
  grpc::Status s = UnimplementedRpc("prl_replay", "ReplayService.Sample");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(s.error_message(),
            "ReplayService.Sample is not implemented by this version of prl_replay");
}

}  // namespace
}  // namespace prl
