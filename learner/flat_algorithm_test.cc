// The flat algorithms' UpdateMany against one Update per batch, and its bad-input errors.
#include "learner/flat_algorithm.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/spec_validation.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

constexpr int kObs = 5;
constexpr int kAct = 2;
constexpr int kBatch = 8;

std::unique_ptr<Algorithm> MustCreate(bool td3) {
  v1::ExperimentSpec spec;
  spec.set_name("flat");
  spec.set_kind(v1::ExperimentSpec::KIND_TRAIN);
  spec.mutable_env()->set_domain(v1::EnvSpec::DOMAIN_CHEETAH);
  spec.mutable_env()->set_task("run_forward");
  if (td3) {
    spec.mutable_algorithm()->mutable_td3();
  } else {
    spec.mutable_algorithm()->mutable_sac();
  }
  spec.mutable_algorithm()->mutable_network()->add_hidden_sizes(16);
  spec.mutable_algorithm()->set_batch_size(kBatch);
  spec.mutable_algorithm()->set_seed(3);
  spec.mutable_stop()->set_max_updates(10);
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  EXPECT_TRUE(filled.ok()) << filled.status();
  AlgorithmOptions options;
  options.spec = *filled;
  options.obs_dim = kObs;
  options.act_dim = kAct;
  options.device = "cpu";
  absl::StatusOr<std::unique_ptr<Algorithm>> algorithm = CreateFlatAlgorithm(options);
  EXPECT_TRUE(algorithm.ok()) << algorithm.status();
  return *std::move(algorithm);
}

std::vector<Batch> Batches(int n) {
  at::manual_seed(11);
  std::vector<Batch> batches(n);
  for (int i = 0; i < n; ++i) {
    Batch& b = batches[i];
    b.columns["observation"] = at::randn({kBatch, kObs});
    b.columns["action"] = at::tanh(at::randn({kBatch, kAct}));
    b.columns["reward"] = at::randn({kBatch});
    b.columns["discount"] = at::ones({kBatch});
    b.columns["next_observation"] = at::randn({kBatch, kObs});
    for (int k = 0; k < kBatch; ++k) b.keys.push_back(100 * i + k);
  }
  return batches;
}

class FlatUpdateManyTest : public ::testing::TestWithParam<bool> {};

TEST_P(FlatUpdateManyTest, IsOneUpdatePerBatchWithTheirResults) {
  const std::vector<Batch> batches = Batches(3);
  std::unique_ptr<Algorithm> one = MustCreate(GetParam());
  std::unique_ptr<Algorithm> many = MustCreate(GetParam());
  std::vector<UpdateResult> expected;
  for (const Batch& b : batches) {
    absl::StatusOr<UpdateResult> r = one->Update(b);
    ASSERT_TRUE(r.ok()) << r.status();
    expected.push_back(*r);
  }
  absl::StatusOr<std::vector<UpdateResult>> got = many->UpdateMany(batches);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ(many->updates(), 3);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*got)[i].scalars, expected[i].scalars) << "batch " << i;
    EXPECT_EQ((*got)[i].priorities, expected[i].priorities) << "batch " << i;
    EXPECT_EQ((*got)[i].priorities.size(), static_cast<size_t>(kBatch));
  }
  // and the networks went the same way
  absl::StatusOr<std::string> a = one->SaveState();
  absl::StatusOr<std::string> b = many->SaveState();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST_P(FlatUpdateManyTest, ABadBatchIsNamedAndNoStepIsTaken) {
  std::vector<Batch> batches = Batches(3);
  batches[2].columns.erase("reward");
  std::unique_ptr<Algorithm> algorithm = MustCreate(GetParam());
  absl::StatusOr<std::vector<UpdateResult>> got = algorithm->UpdateMany(batches);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("batches[2]: batch has no 'reward' column"));
  EXPECT_EQ(algorithm->updates(), 0);
}

INSTANTIATE_TEST_SUITE_P(SacAndTd3, FlatUpdateManyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "td3" : "sac";
                         });

// An algorithm without its own UpdateMany gets the default: Update per batch, errors named.
class CountingAlgorithm final : public Algorithm {
 public:
  std::string name() const override { return "counting"; }
  std::vector<TableSpec> Tables() const override { return {}; }
  void DescribeActing(v1::Assignment*) const override {}
  absl::StatusOr<UpdateResult> Update(const Batch& batch) override {
    if (batch.columns.count("bad") > 0) return absl::InvalidArgumentError("column 'bad'");
    UpdateResult r;
    r.scalars["n"] = static_cast<double>(++updates_);
    return r;
  }
  absl::Status ExportPolicy(v1::PolicyArchitecture*,
                            std::vector<std::pair<std::string, HostTensor>>*) const override {
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> SaveState() const override { return std::string(); }
  absl::Status RestoreState(const std::string&) override { return absl::OkStatus(); }
  int64_t updates() const override { return updates_; }
  std::string device() const override { return "cpu"; }

 private:
  int64_t updates_ = 0;
};

TEST(AlgorithmUpdateManyTest, TheDefaultUpdatesPerBatchAndNamesAFailingOne) {
  CountingAlgorithm algorithm;
  std::vector<Batch> batches(3);
  absl::StatusOr<std::vector<UpdateResult>> got = algorithm.UpdateMany(batches);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[2].scalars.at("n"), 3);
  batches[1].columns["bad"] = at::zeros({1});
  got = algorithm.UpdateMany(batches);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(), "batches[1]: column 'bad'");
}

}  // namespace
}  // namespace prl::learner
