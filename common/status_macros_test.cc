#include "common/status_macros.h"

#include <memory>

#include "gtest/gtest.h"

namespace prl {
namespace {

absl::Status FailIf(bool fail) {
  return fail ? absl::InvalidArgumentError("failed") : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MakeInt(bool fail, int value) {
  if (fail) return absl::NotFoundError("no int");
  return std::make_unique<int>(value);
}

absl::Status Chain(bool fail_first, bool fail_second, int* out) {
  PRL_RETURN_IF_ERROR(FailIf(fail_first));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<int> v, MakeInt(fail_second, 7));
  PRL_ASSIGN_OR_RETURN(auto w, MakeInt(false, 5));  // two on one function: distinct temporaries
  *out = *v + *w;
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagatesFirstError) {
  int out = 0;
  EXPECT_EQ(Chain(true, false, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Chain(false, true, &out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(out, 0);
}

TEST(StatusMacrosTest, AssignsMoveOnlyValues) {
  int out = 0;
  ASSERT_TRUE(Chain(false, false, &out).ok());
  EXPECT_EQ(out, 12);
}

}  // namespace
}  // namespace prl
