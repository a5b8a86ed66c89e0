#include "models/torch_prior_inference.h"

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/cvae_model.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"

namespace prl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

HostTensor Host(const at::Tensor& t) { return FromTorch(t.contiguous()).value(); }

at::Tensor Torch(const HostTensor& t) { return ToTorch(t.view()); }

std::string Write(const ModelArtifact& artifact, const std::string& file) {
  const std::string path = ::testing::TempDir() + "/" + file;
  EXPECT_TRUE(WriteModelArtifact(path, artifact).ok());
  return path;
}

// EAP's CVAE decodes open loop: k actions per call, [B, k, A]; its Prior is the state prior.
// A latent-SAC CVAE (k = 1, fixed prior) answers Prior with N(0, I).
TEST(TorchPriorInferenceTest, CvaeArtifactDecodesKActionsPerCall) {
  for (bool learned : {true, false}) {
    CvaeModelOptions options;
    options.obs_dim = 4;
    options.act_dim = 2;
    options.horizon = learned ? 3 : 1;
    options.latent_dim = 5;
    options.learned_prior = learned;
    options.network.add_hidden_sizes(16);
    std::unique_ptr<CvaeModel> model = CvaeModel::Create(options).value();
    v1::ModelInfo info;
    info.set_name("cvae");
    info.set_version(1);
    const std::string path = Write(model->ToArtifact(info).value(), "cvae.prl");
    absl::StatusOr<std::unique_ptr<PriorInference>> prior = LoadPriorFile(path, {});
    ASSERT_TRUE(prior.ok()) << prior.status();
    EXPECT_EQ(DecodeStepsPerCall((*prior)->info()), options.horizon);
    const at::Tensor z = at::randn({6, 5});
    const at::Tensor state = at::randn({6, 4});
    absl::StatusOr<std::vector<HostTensor>> decoded =
        (*prior)->Run(PriorMethod::kDecode, {Host(z), Host(state)});
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_THAT((*decoded)[0].shape(), ElementsAre(6, options.horizon, 2));
    EXPECT_TRUE(at::allclose(Torch((*decoded)[0]), model->Decode(state, z).value(), 1e-6, 1e-6));
    absl::StatusOr<std::vector<HostTensor>> p = (*prior)->Run(PriorMethod::kPrior, {Host(state)});
    ASSERT_TRUE(p.ok()) << p.status();
    const DiagonalGaussian g = model->Prior(state).value();
    EXPECT_TRUE(at::allclose(Torch((*p)[0]), g.mean, 1e-6, 1e-6));
    if (!learned) {
      EXPECT_EQ(at::count_nonzero(Torch((*p)[0])).item<int64_t>(), 0);
      EXPECT_EQ(at::count_nonzero(Torch((*p)[1])).item<int64_t>(), 0);
    }
  }
}

TEST(TorchPriorInferenceTest, SkillArtifactAnswersLikeTheModel) {
  SkillModelOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  options.horizon = 5;
  options.latent_dim = 3;
  options.network.add_hidden_sizes(16);
  options.seed = 7;
  std::unique_ptr<SkillModel> model = SkillModel::Create(options).value();
  v1::ModelInfo info;
  info.set_name("skills");
  info.set_version(2);
  const std::string path = Write(model->ToArtifact(info).value(), "skills.prl");

  PriorLoadOptions load;
  absl::StatusOr<std::unique_ptr<PriorInference>> prior = LoadPriorFile(path, load);
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ((*prior)->info().name(), "skills");
  EXPECT_EQ((*prior)->info().version(), 2);
  EXPECT_EQ((*prior)->info().artifact_path(), path);
  EXPECT_GT((*prior)->info().size_bytes(), 0);

  at::manual_seed(1);
  const at::Tensor z = at::randn({6, 3});
  const at::Tensor state = at::randn({6, 4});
  absl::StatusOr<std::vector<HostTensor>> decoded =
      (*prior)->Run(PriorMethod::kDecode, {Host(z), Host(state)});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_THAT((*decoded)[0].shape(), ElementsAre(6, 1, 2));
  const at::Tensor want = model->Decode(state, z).value();
  EXPECT_TRUE(at::allclose(Torch((*decoded)[0]).view({6, 2}), want, 1e-6, 1e-6));

  absl::StatusOr<std::vector<HostTensor>> p = (*prior)->Run(PriorMethod::kPrior, {Host(state)});
  ASSERT_TRUE(p.ok()) << p.status();
  const DiagonalGaussian g = model->Prior(state).value();
  EXPECT_TRUE(at::allclose(Torch((*p)[0]), g.mean, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(Torch((*p)[1]), g.log_std, 1e-6, 1e-6));

  absl::Status wrong = (*prior)->Run(PriorMethod::kForward, {Host(z), Host(state)}).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition);

  // Served under another name and version.
  load.name = "renamed";
  load.version = 9;
  absl::StatusOr<std::unique_ptr<PriorInference>> renamed = LoadPriorFile(path, load);
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ((*renamed)->info().name(), "renamed");
  EXPECT_EQ((*renamed)->info().version(), 9);
}

TEST(TorchPriorInferenceTest, FlowArtifactAnswersForwardAndInverse) {
  RealNvpOptions options;
  options.obs_dim = 3;
  options.act_dim = 2;
  options.network.add_hidden_sizes(16);
  options.seed = 3;
  std::unique_ptr<RealNvpFlow> flow = RealNvpFlow::Create(options).value();
  v1::ModelInfo info;
  info.set_name("flow");
  info.set_version(1);
  const std::string path = Write(flow->ToArtifact(info).value(), "flow.prl");
  absl::StatusOr<std::unique_ptr<PriorInference>> prior = LoadPriorFile(path, {});
  ASSERT_TRUE(prior.ok()) << prior.status();

  at::manual_seed(2);
  const at::Tensor z = at::randn({5, 2});
  const at::Tensor state = at::randn({5, 3});
  absl::StatusOr<std::vector<HostTensor>> fwd =
      (*prior)->Run(PriorMethod::kForward, {Host(z), Host(state)});
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  EXPECT_THAT((*fwd)[1].shape(), ElementsAre(5));
  const RealNvpFlow::Result want = flow->Forward(z, state).value();
  EXPECT_TRUE(at::allclose(Torch((*fwd)[0]), want.value, 1e-6, 1e-6));
  absl::StatusOr<std::vector<HostTensor>> inv =
      (*prior)->Run(PriorMethod::kInverse, {(*fwd)[0], Host(state)});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_TRUE(at::allclose(Torch((*inv)[0]), z, 1e-4, 1e-4));
}

TEST(TorchPriorInferenceTest, RefusesWhatItCannotServe) {
  // Not a file at all.
  EXPECT_EQ(LoadPriorFile(::testing::TempDir() + "/missing.prl", {}).status().code(),
            absl::StatusCode::kNotFound);
  // A corrupted PRL file.
  absl::Status s = LoadPrior("PRLFILE\0garbage", "pushed bytes", {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("pushed bytes"));
  // A zip that is not a TorchScript module.
  const std::string zip("PK\x03\x04not really a zip", 22);
  PriorLoadOptions named;
  named.name = "imported";
  named.version = 1;
  s = LoadPrior(zip, "upload.pt", named).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("upload.pt: not a TorchScript module"));
  // A TorchScript module needs a name and version to be served under.
  s = LoadPrior(zip, "upload.pt", {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("needs the name and version"));
  // A device this process does not have.
  PriorLoadOptions gpu;
  gpu.device = "cuda:7";
  RealNvpOptions options;
  options.obs_dim = 1;
  options.act_dim = 1;
  v1::ModelInfo info;
  info.set_name("flow");
  info.set_version(1);
  ModelArtifact artifact = RealNvpFlow::Create(options).value()->ToArtifact(info).value();
  EXPECT_EQ(PriorFromArtifact(artifact, gpu).status().code(),
            absl::StatusCode::kFailedPrecondition);
  gpu.device = "tpu";
  EXPECT_EQ(PriorFromArtifact(artifact, gpu).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prl::models
