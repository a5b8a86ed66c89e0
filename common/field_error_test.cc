#include "common/field_error.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace prl {
namespace {

TEST(FieldErrorTest, WordsTheHouseForm) {
  const absl::Status s = FieldError("algorithm.discount", 1.5, "in (0, 1]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "algorithm.discount: 1.5 is not allowed; it must be in (0, 1]");
}

TEST(FieldErrorTest, PrintsNumbersAsStrCatDoes) {
  EXPECT_EQ(FieldError("obs_dim", 0, "> 0").message(), "obs_dim: 0 is not allowed; it must be > 0");
  EXPECT_EQ(FieldError("x", int64_t{-7}, ">= 0").message(),
            "x: -7 is not allowed; it must be >= 0");
  EXPECT_EQ(FieldError("lr", 3e-4, "> 0").message(), "lr: 0.0003 is not allowed; it must be > 0");
  EXPECT_EQ(FieldError("lr", std::nan(""), "> 0").message(),
            "lr: nan is not allowed; it must be > 0");
  EXPECT_EQ(FieldError("lr", -std::numeric_limits<double>::infinity(), "> 0").message(),
            "lr: -inf is not allowed; it must be > 0");
}

TEST(FieldErrorTest, TakesTextValuesAsGiven) {
  EXPECT_EQ(FieldError("device", "\"tpu\"", "auto, cpu, cuda or cuda:N").message(),
            "device: \"tpu\" is not allowed; it must be auto, cpu, cuda or cuda:N");
  EXPECT_EQ(FieldError("batch.obs", absl::StrCat("shape ", "[0]"), "[B, 3]").message(),
            "batch.obs: shape [0] is not allowed; it must be [B, 3]");
}

TEST(FieldErrorTest, RangeErrorNamesTheBounds) {
  const absl::Status s = FieldRangeError("hidden_sizes[1]", 5000, 1, 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "hidden_sizes[1]: 5000 is not allowed; it must be in 1..4096");
}

TEST(FieldErrorTest, ProblemKeepsTheRuleVerbatim) {
  EXPECT_EQ(FieldProblem("resources.num_actors", 2000, "use 1..1024, or 0 for the default 1"),
            "resources.num_actors: 2000 is not allowed; use 1..1024, or 0 for the default 1");
  EXPECT_EQ(FieldProblem("env", "unset", "KIND_TRAIN requires an env"),
            "env: unset is not allowed; KIND_TRAIN requires an env");
}

TEST(FieldErrorTest, QuotedFormForReplay) {
  const absl::Status what = QuotedFieldError("config.signature", "is empty");
  EXPECT_EQ(what.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(what.message(), "field 'config.signature': is empty");
  const absl::Status value = QuotedFieldError("batch_size", 0, "allowed: 1 to 4096");
  EXPECT_EQ(value.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(value.message(), "field 'batch_size': 0 is not allowed; allowed: 1 to 4096");
}

}  // namespace
}  // namespace prl
