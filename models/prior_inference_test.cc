#include "models/prior_inference.h"

#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::ModelInfo SkillInfo() {
  v1::ModelInfo info;
  info.set_name("skills");
  info.set_version(3);
  info.set_kind(v1::PRIOR_KIND_SKILL_VAE);
  info.set_obs_dim(4);
  info.set_action_dim(2);
  info.set_latent_dim(10);
  info.set_horizon(10);
  info.set_state_conditioned_decoder(true);
  info.add_methods("Decode");
  info.add_methods("Prior");
  return info;
}

HostTensor Filled(int64_t rows, int64_t cols, float start) {
  std::vector<float> v(rows * cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<float>(i);
  return HostTensor::FromFloats({rows, cols}, v);
}

TEST(PriorInferenceTest, MethodNamesRoundTrip) {
  for (PriorMethod m : kAllPriorMethods) {
    absl::StatusOr<PriorMethod> back = PriorMethodFromName(PriorMethodName(m));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, m);
  }
  EXPECT_THAT(PriorMethodFromName("decode").status().message(), HasSubstr("Decode, Prior"));
}

TEST(PriorInferenceTest, InputSpecsFollowTheModel) {
  v1::ModelInfo info = SkillInfo();
  std::vector<PriorInputSpec> decode = PriorInputSpecs(info, PriorMethod::kDecode);
  ASSERT_EQ(decode.size(), 2u);
  EXPECT_EQ(decode[0].field, "z");
  EXPECT_EQ(decode[0].width, 10);
  EXPECT_EQ(decode[1].width, 4);
  info.set_state_conditioned_decoder(false);
  EXPECT_EQ(PriorInputSpecs(info, PriorMethod::kDecode)[1].width, 0);
  EXPECT_EQ(DecodeStepsPerCall(SkillInfo()), 1);
  info.set_kind(v1::PRIOR_KIND_CVAE);
  EXPECT_EQ(DecodeStepsPerCall(info), 10);
  EXPECT_THAT(PriorOutputFields(PriorMethod::kInverse), ElementsAre("z", "log_det"));
}

TEST(PriorInferenceTest, CheckPriorInputsAcceptsAGoodCall) {
  absl::StatusOr<int64_t> rows =
      CheckPriorInputs(SkillInfo(), PriorMethod::kDecode, {Filled(3, 10, 0), Filled(3, 4, 0)});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, 3);
}

TEST(PriorInferenceTest, CheckPriorInputsNamesWhatIsWrong) {
  const v1::ModelInfo info = SkillInfo();
  absl::Status s =
      CheckPriorInputs(info, PriorMethod::kForward, {Filled(1, 2, 0), Filled(1, 4, 0)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("does not answer Forward; it answers: Decode, Prior"));

  s = CheckPriorInputs(info, PriorMethod::kDecode, {Filled(2, 9, 0), Filled(2, 4, 0)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("z: shape [2, 9]"));
  EXPECT_THAT(s.message(), HasSubstr("expected [B, 10]"));

  s = CheckPriorInputs(info, PriorMethod::kDecode, {Filled(2, 10, 0), Filled(3, 4, 0)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("state: 3 rows, but z has 2"));

  HostTensor nan = Filled(2, 4, 0);
  nan.mutable_data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  s = CheckPriorInputs(info, PriorMethod::kPrior, {nan}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("state: element 5 (row 1) is nan"));

  s = CheckPriorInputs(info, PriorMethod::kPrior, {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(PriorInferenceTest, ConcatAndSliceRowsRoundTrip) {
  const HostTensor a = Filled(2, 3, 0);
  const HostTensor b = Filled(1, 3, 100);
  const HostTensor both = ConcatRows({&a, &b});
  EXPECT_THAT(both.shape(), ElementsAre(3, 3));
  EXPECT_EQ(both.data<float>()[6], 100.0f);
  const HostTensor back = SliceRows(both, 2, 1);
  EXPECT_THAT(back.shape(), ElementsAre(1, 3));
  EXPECT_EQ(back.bytes(), b.bytes());
  EXPECT_EQ(SliceRows(both, 0, 2).bytes(), a.bytes());
  const HostTensor two = HostTensor::Zeros(DType::kFloat32, {2, 0}).value();
  const HostTensor three = HostTensor::Zeros(DType::kFloat32, {3, 0}).value();
  const HostTensor empty_cols = ConcatRows({&two, &three});
  EXPECT_THAT(empty_cols.shape(), ElementsAre(5, 0));
}

}  // namespace
}  // namespace prl::models
