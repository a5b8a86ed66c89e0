#include "common/client.h"

#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::HasSubstr;

RetryOptions FastRetry(int attempts) {
  RetryOptions r;
  r.max_attempts = attempts;
  r.initial_backoff = absl::Milliseconds(1);
  r.max_backoff = absl::Milliseconds(4);
  return r;
}

TEST(CallWithRetryTest, RetriesUnavailableUntilSuccess) {
  int calls = 0;
  absl::Status s = CallWithRetry({}, FastRetry(5), [&](grpc::ClientContext* context) {
    EXPECT_LT(context->deadline(), std::chrono::system_clock::now() + std::chrono::seconds(11));
    return ++calls < 3 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "down") : grpc::Status::OK;
  });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 3);
}

TEST(CallWithRetryTest, GivesUpAfterMaxAttempts) {
  int calls = 0;
  absl::Status s = CallWithRetry({}, FastRetry(4), [&](grpc::ClientContext*) {
    ++calls;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "shard down");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("shard down"));
  EXPECT_EQ(calls, 4);
}

TEST(CallWithRetryTest, DoesNotRetryOtherErrors) {
  int calls = 0;
  absl::Status s = CallWithRetry({}, FastRetry(5), [&](grpc::ClientContext*) {
    ++calls;
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "field 'x'");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);
}

TEST(CallWithRetryTest, RespectsTotalTimeout) {
  RetryOptions r = FastRetry(1000);
  r.initial_backoff = absl::Milliseconds(20);
  r.max_backoff = absl::Milliseconds(20);
  r.total_timeout = absl::Milliseconds(100);
  int calls = 0;
  CallWithRetry({}, r, [&](grpc::ClientContext*) {
    ++calls;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  }).IgnoreError();
  EXPECT_LT(calls, 20);
}

// A shutdown cancels a call that is retrying on a long schedule: it ends as CANCELLED without
// sleeping out its 30 s backoff or trying again, and one cancelled before it starts never
// calls. (The cancel arrives during the attempt; a cancel during the backoff sleep wakes it:
// tests/prior_push_test's DestroyingThePusherEndsAPushInProgress.)
TEST(CallWithRetryTest, ACancellerEndsTheRetries) {
  CallCanceller canceller;
  RetryOptions r = FastRetry(2);
  r.initial_backoff = absl::Seconds(30);
  r.max_backoff = absl::Seconds(30);
  r.total_timeout = absl::Minutes(5);
  r.canceller = &canceller;
  int calls = 0;
  const absl::Status s = CallWithRetry({}, r, [&](grpc::ClientContext*) {
    ++calls;
    canceller.Cancel();  // the shutdown, while the attempt is in flight
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "prior server restarting");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);  // not tried again after the cancel
  EXPECT_TRUE(canceller.cancelled());
  // cancelled before it starts: never calls
  EXPECT_EQ(CallWithRetry({}, r,
                          [&](grpc::ClientContext*) {
                            ++calls;
                            return grpc::Status::OK;
                          })
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(CallWithRetryTest, SendsTokenAndDeadline) {
  CallOptions options;
  options.auth_token = "abc";
  options.timeout = absl::Milliseconds(250);
  grpc::ClientContext context;
  const auto before = std::chrono::system_clock::now();
  PrepareContext(options, &context);
  EXPECT_LE(context.deadline(), before + std::chrono::milliseconds(400));
  EXPECT_GE(context.deadline(), before + std::chrono::milliseconds(200));
}

TEST(ChannelTest, RejectsEmptyAddressAndMissingCa) {
  EXPECT_EQ(CreateChannel({}).status().code(), absl::StatusCode::kInvalidArgument);
  ChannelOptions o;
  o.address = "127.0.0.1:1";
  o.tls_ca_file = "/nonexistent/ca.pem";
  auto channel = CreateChannel(o);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(channel.status().message(), HasSubstr("/nonexistent/ca.pem"));
}

TEST(CheckHealthTest, UnreachableServerIsUnavailableWithinDeadline) {
  auto channel = CreateChannel({"127.0.0.1:1"});
  ASSERT_TRUE(channel.ok());
  CallOptions quick;
  quick.timeout = absl::Milliseconds(300);
  absl::Status s = CheckHealth(*channel, quick);
  EXPECT_TRUE(s.code() == absl::StatusCode::kUnavailable ||
              s.code() == absl::StatusCode::kDeadlineExceeded)
      << s;
}

}  // namespace
}  // namespace prl
