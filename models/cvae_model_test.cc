#include "models/cvae_model.h"

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/torch_tensor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/prior_model_util.h"
#include "proto/prior.pb.h"

namespace prl::models {
namespace {

using ::testing::HasSubstr;

// ---- a world with four extended actions chosen by the state ----
//
// The state is a point (x, y) away from the axes; a window holds k = 4 actions of one of four
// fixed sequences, chosen by the quadrant of its first state. The encoder should tell the
// sequences apart, the open-loop decoder replay them from (s_1, z), and EAP's state prior learn
// quadrant → sequence, so decoding the prior's mean at a state gives that quadrant's actions.

constexpr int kObsDim = 2;
constexpr int kActDim = 2;
constexpr int kHorizon = 4;
constexpr int kLatent = 3;

float SequenceAction(int seq, int t, int i) {
  const double angle = M_PI / 2 * seq + 0.7 * t;
  return static_cast<float>(0.8 * (i == 0 ? std::cos(angle) : std::sin(angle)));
}

WindowBatch Windows(int n, std::mt19937& rng) {
  std::uniform_real_distribution<float> magnitude(0.2f, 1.0f);
  std::bernoulli_distribution sign;
  at::Tensor obs = at::empty({n, kHorizon, kObsDim}, at::kFloat);
  at::Tensor actions = at::empty({n, kHorizon, kActDim}, at::kFloat);
  auto o = obs.accessor<float, 3>();
  auto a = actions.accessor<float, 3>();
  for (int b = 0; b < n; ++b) {
    float x = magnitude(rng) * (sign(rng) ? 1 : -1);
    float y = magnitude(rng) * (sign(rng) ? 1 : -1);
    const int seq = (x >= 0 ? 1 : 0) + (y >= 0 ? 2 : 0);
    for (int t = 0; t < kHorizon; ++t) {
      o[b][t][0] = x;
      o[b][t][1] = y;
      a[b][t][0] = SequenceAction(seq, t, 0);
      a[b][t][1] = SequenceAction(seq, t, 1);
      x += 0.05f * a[b][t][0];
      y += 0.05f * a[b][t][1];
    }
  }
  return {obs, actions};
}

CvaeModelOptions SmallOptions(bool learned_prior, int64_t seed = 3) {
  CvaeModelOptions o;
  o.obs_dim = kObsDim;
  o.act_dim = kActDim;
  o.horizon = kHorizon;
  o.latent_dim = kLatent;
  o.learned_prior = learned_prior;
  o.network.add_hidden_sizes(64);
  o.network.add_hidden_sizes(64);
  o.seed = seed;
  return o;
}

std::unique_ptr<CvaeModel> Make(const CvaeModelOptions& options) {
  absl::StatusOr<std::unique_ptr<CvaeModel>> model = CvaeModel::Create(options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *std::move(model) : nullptr;
}

// KL(q ‖ p) per dimension, by the textbook formula in double precision.
double KlByHand(double mq, double lq, double mp, double lp) {
  const double vq = std::exp(2 * lq), vp = std::exp(2 * lp);
  return lp - lq + (vq + (mq - mp) * (mq - mp)) / (2 * vp) - 0.5;
}

// Evaluate's kl_loss is the mean over rows and latent dims of KL(q(z|s_1, a) ‖ prior(z|s_1)),
// and loss = reconstruction_loss + β·kl_loss — checked by hand against Encode and Prior.
void CheckLossTermsByHand(bool learned_prior) {
  CvaeModelOptions options = SmallOptions(learned_prior);
  options.beta = 0.25;
  std::unique_ptr<CvaeModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(5);
  WindowBatch batch = Windows(16, rng);
  absl::StatusOr<Losses> losses = model->Evaluate(batch);
  ASSERT_TRUE(losses.ok()) << losses.status();
  at::Tensor first = batch.obs.select(1, 0).contiguous();
  absl::StatusOr<DiagonalGaussian> q = model->Encode(first, batch.actions);
  absl::StatusOr<DiagonalGaussian> p = model->Prior(first);
  ASSERT_TRUE(q.ok() && p.ok());
  at::Tensor qm = q->mean.to(at::kDouble), ql = q->log_std.to(at::kDouble);
  at::Tensor pm = p->mean.to(at::kDouble), pl = p->log_std.to(at::kDouble);
  double kl = 0;
  for (int b = 0; b < 16; ++b) {
    for (int j = 0; j < kLatent; ++j) {
      kl += KlByHand(qm[b][j].item<double>(), ql[b][j].item<double>(), pm[b][j].item<double>(),
                     pl[b][j].item<double>());
    }
  }
  kl /= 16 * kLatent;
  EXPECT_NEAR(losses->at("kl_loss"), kl, 1e-5 * std::max(1.0, kl));
  EXPECT_NEAR(losses->at("loss"),
              losses->at("reconstruction_loss") + options.beta * losses->at("kl_loss"), 1e-5);
  if (!learned_prior) {
    EXPECT_EQ(at::count_nonzero(p->mean).item<int64_t>(), 0);
    EXPECT_EQ(at::count_nonzero(p->log_std).item<int64_t>(), 0);
  }
}

TEST(CvaeModelTest, LossTermsMatchHandComputedValuesWithAFixedPrior) {
  CheckLossTermsByHand(false);
}

TEST(CvaeModelTest, LossTermsMatchHandComputedValuesWithALearnedPrior) {
  CheckLossTermsByHand(true);
}

// The whole EAP story on the synthetic world: after training, (1) decoding the posterior mean
// reconstructs each window, (2) decoding the state prior's mean at a window's first state gives
// that quadrant's sequence — the prior picked the right extended action from the state alone.
TEST(CvaeModelTest, LearnsSequencesAndTheStatePriorPicksThemFromTheState) {
  CvaeModelOptions options = SmallOptions(/*learned_prior=*/true);
  options.beta = 1e-2;
  std::unique_ptr<CvaeModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(11);
  double first_loss = 0;
  for (int step = 0; step < 1500; ++step) {
    absl::StatusOr<Losses> l = model->TrainStep(Windows(64, rng));
    ASSERT_TRUE(l.ok()) << l.status();
    if (step == 0) first_loss = l->at("reconstruction_loss");
  }
  WindowBatch test = Windows(256, rng);
  at::Tensor first = test.obs.select(1, 0).contiguous();
  absl::StatusOr<DiagonalGaussian> q = model->Encode(first, test.actions);
  ASSERT_TRUE(q.ok());
  absl::StatusOr<at::Tensor> recon = model->Decode(first, q->mean);
  ASSERT_TRUE(recon.ok());
  const double recon_mse = (*recon - test.actions).square().mean().item<double>();
  absl::StatusOr<DiagonalGaussian> p = model->Prior(first);
  ASSERT_TRUE(p.ok());
  absl::StatusOr<at::Tensor> from_prior = model->Decode(first, p->mean);
  ASSERT_TRUE(from_prior.ok());
  const double prior_mse = (*from_prior - test.actions).square().mean().item<double>();
  // the actions have mean square 0.32; predicting their mean would score about that
  EXPECT_LT(recon_mse, 0.02) << "first " << first_loss;
  EXPECT_LT(prior_mse, 0.05);
  EXPECT_EQ(recon->sizes().vec(), (std::vector<int64_t>{256, kHorizon, kActDim}));
}

// Latent SAC's generator (k = 1, N(0, I) prior): decoding z ~ N(0, I) at a state gives actions
// close to the data's for that state, and the loss goes down. β = 1: the report's plain
// conditional evidence bound, which keeps the posterior where N(0, I) samples land.
TEST(CvaeModelTest, OneStepGeneratorWithAFixedPriorLearns) {
  CvaeModelOptions options = SmallOptions(/*learned_prior=*/false);
  options.horizon = 1;
  options.beta = 1.0;
  std::unique_ptr<CvaeModel> model = Make(options);
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(2);
  auto one_step = [&](int n) {
    WindowBatch w = Windows(n, rng);
    return WindowBatch{w.obs.narrow(1, 0, 1).contiguous(), w.actions.narrow(1, 0, 1).contiguous()};
  };
  absl::StatusOr<Losses> before = model->Evaluate(one_step(256));
  ASSERT_TRUE(before.ok()) << before.status();
  for (int step = 0; step < 800; ++step) ASSERT_TRUE(model->TrainStep(one_step(64)).ok());
  WindowBatch test = one_step(256);
  absl::StatusOr<Losses> after = model->Evaluate(test);
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->at("reconstruction_loss"), 0.1 * before->at("reconstruction_loss"));
  at::Tensor first = test.obs.select(1, 0).contiguous();
  absl::StatusOr<at::Tensor> sampled = model->Decode(first, at::randn({256, kLatent}));
  ASSERT_TRUE(sampled.ok());
  EXPECT_LT((*sampled - test.actions).square().mean().item<double>(), 0.05);
}

TEST(CvaeModelTest, ArtifactRoundTripIsBitIdentical) {
  for (bool learned : {false, true}) {
    std::unique_ptr<CvaeModel> model = Make(SmallOptions(learned));
    ASSERT_NE(model, nullptr);
    std::mt19937 rng(1);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(model->TrainStep(Windows(32, rng)).ok());
    v1::ModelInfo info;
    info.set_name("cvae");
    info.set_version(2);
    absl::StatusOr<ModelArtifact> artifact = model->ToArtifact(info);
    ASSERT_TRUE(artifact.ok()) << artifact.status();
    EXPECT_EQ(artifact->info.kind(), v1::PRIOR_KIND_CVAE);
    EXPECT_EQ(artifact->info.horizon(), kHorizon);
    EXPECT_TRUE(artifact->info.state_conditioned_decoder());
    EXPECT_EQ(artifact->hyperparameters.at("learned_prior"), learned ? 1 : 0);
    bool has_prior_weights = false;
    for (const auto& [name, t] : artifact->tensors) {
      has_prior_weights |= name.rfind("prior.", 0) == 0;
    }
    EXPECT_EQ(has_prior_weights, learned);

    absl::StatusOr<std::unique_ptr<CvaeModel>> loaded = CvaeModel::FromArtifact(*artifact);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->learned_prior(), learned);
    WindowBatch probe = Windows(8, rng);
    at::Tensor first = probe.obs.select(1, 0).contiguous();
    at::Tensor z = at::randn({8, kLatent});
    EXPECT_TRUE(at::equal(*model->Decode(first, z), *(*loaded)->Decode(first, z)));
    EXPECT_TRUE(at::equal(model->Prior(first)->mean, (*loaded)->Prior(first)->mean));
    absl::StatusOr<ModelArtifact> again = (*loaded)->ToArtifact(info);
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(again->tensors.size(), artifact->tensors.size());
    for (size_t i = 0; i < again->tensors.size(); ++i) {
      EXPECT_EQ(again->tensors[i].first, artifact->tensors[i].first);
      EXPECT_EQ(again->tensors[i].second.bytes(), artifact->tensors[i].second.bytes());
    }
  }
}

// A checkpointed training state put into a fresh model (another seed, even) continues exactly:
// the same steps on the same batches give bit-identical weights, noise included.
TEST(CvaeModelTest, TrainingStateRestoresTrainingExactly) {
  std::unique_ptr<CvaeModel> a = Make(SmallOptions(true, /*seed=*/1));
  std::unique_ptr<CvaeModel> b = Make(SmallOptions(true, /*seed=*/2));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::mt19937 rng(9);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(a->TrainStep(Windows(16, rng)).ok());
  v1::ModelInfo info;
  info.set_name("ckpt");
  info.set_version(1);
  absl::StatusOr<ModelArtifact> state = a->TrainingState(info);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->hyperparameters.at("training.adam.steps"), 4);
  // through bytes, as a checkpoint file holds it
  absl::StatusOr<std::string> bytes = SerializeModelArtifact(*state);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<ModelArtifact> parsed = ParseModelArtifact(*bytes, "checkpoint");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(b->RestoreTrainingState(*parsed).ok());
  for (int i = 0; i < 3; ++i) {
    WindowBatch batch = Windows(16, rng);
    absl::StatusOr<Losses> la = a->TrainStep(batch);
    absl::StatusOr<Losses> lb = b->TrainStep(batch);
    ASSERT_TRUE(la.ok() && lb.ok());
    EXPECT_EQ(la->at("loss"), lb->at("loss"));
  }
  absl::StatusOr<ModelArtifact> wa = a->ToArtifact(info), wb = b->ToArtifact(info);
  ASSERT_TRUE(wa.ok() && wb.ok());
  for (size_t i = 0; i < wa->tensors.size(); ++i) {
    EXPECT_EQ(wa->tensors[i].second.bytes(), wb->tensors[i].second.bytes()) << wa->tensors[i].first;
  }
  // a state without its optimizer moments is refused by name
  ModelArtifact damaged = *state;
  damaged.tensors.erase(damaged.tensors.end() - 3);
  absl::Status s = b->RestoreTrainingState(damaged);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("training.adam"));
}

TEST(CvaeModelTest, ForeignOrDamagedArtifactsAreRefusedNamingWhat) {
  std::unique_ptr<CvaeModel> model = Make(SmallOptions(true));
  ASSERT_NE(model, nullptr);
  absl::StatusOr<ModelArtifact> good = model->ToArtifact(v1::ModelInfo());
  ASSERT_TRUE(good.ok());
  auto refused = [&](auto damage, const std::string& what) {
    ModelArtifact a = *good;
    damage(a);
    absl::StatusOr<std::unique_ptr<CvaeModel>> loaded = CvaeModel::FromArtifact(a);
    ASSERT_FALSE(loaded.ok()) << what;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(what));
  };
  refused([](ModelArtifact& a) { a.info.set_kind(v1::PRIOR_KIND_SKILL_VAE); }, "info.kind");
  refused([](ModelArtifact& a) { a.info.set_horizon(0); }, "info.horizon");
  refused([](ModelArtifact& a) { a.hyperparameters.erase("learned_prior"); }, "learned_prior");
  // a fixed-prior header over learned-prior weights: the prior's tensors are unexpected
  refused([](ModelArtifact& a) { a.hyperparameters["learned_prior"] = 0; }, "prior.");
  refused([](ModelArtifact& a) { a.tensors.pop_back(); }, "missing");
  refused([](ModelArtifact& a) { a.info.set_latent_dim(kLatent + 1); }, "tensors[");
}

TEST(CvaeModelTest, BadOptionsAndInputsNameTheField) {
  CvaeModelOptions o = SmallOptions(false);
  o.horizon = 0;
  EXPECT_THAT(std::string(CvaeModel::Create(o).status().message()), HasSubstr("options.horizon"));
  o = SmallOptions(false);
  o.beta = -1;
  EXPECT_THAT(std::string(CvaeModel::Create(o).status().message()), HasSubstr("options.beta"));
  o = SmallOptions(false);
  o.obs_dim = 0;
  EXPECT_THAT(std::string(CvaeModel::Create(o).status().message()), HasSubstr("options.obs_dim"));

  std::unique_ptr<CvaeModel> model = Make(SmallOptions(true));
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(4);
  WindowBatch batch = Windows(4, rng);
  WindowBatch short_windows{batch.obs.narrow(1, 0, 2).contiguous(),
                            batch.actions.narrow(1, 0, 2).contiguous()};
  absl::StatusOr<Losses> s = model->TrainStep(short_windows);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("batch.obs"));
  WindowBatch nan = {batch.obs.clone(), batch.actions.clone()};
  nan.actions[0][0][0] = NAN;
  s = model->TrainStep(nan);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("batch.actions"));
  EXPECT_THAT(
      std::string(
          model->Decode(at::zeros({2, kObsDim}), at::zeros({3, kLatent})).status().message()),
      HasSubstr("z"));
  EXPECT_THAT(std::string(model->Prior(at::zeros({2, kObsDim + 1})).status().message()),
              HasSubstr("obs"));
}

// ---- the autograd-free CPU step ----

// `model` with its encoder's (and learned prior's) log σ biases at `value` in every other
// latent dimension, beyond a clamp when |value| is large.
void PushLogStdBiases(CvaeModel* model, float value) {
  absl::StatusOr<ModelArtifact> state = model->TrainingState(v1::ModelInfo());
  ASSERT_TRUE(state.ok()) << state.status();
  for (auto& [name, tensor] : state->tensors) {
    if (name != "encoder.log_std.bias" && name != "prior.log_std.bias") continue;
    at::Tensor bias = ToTorch(tensor.view()).clone();
    for (int64_t j = 0; j < bias.size(0); j += 2) bias[j] = value;
    absl::StatusOr<HostTensor> host = FromTorch(bias);
    ASSERT_TRUE(host.ok());
    tensor = *std::move(host);
  }
  ASSERT_TRUE(model->RestoreTrainingState(*state).ok());
}

// The direct and autograd paths agree on the gradient and the terms from the same weights, ε and
// batch: fixed and learned priors, one and two shards (640 one-step rows at 2 threads), heads
// inside and beyond the log σ clamps.
TEST(CvaeModelTest, DirectStepGradientMatchesAutograd) {
  if (!prior_util::DirectStepAvailable(c10::Device(at::kCPU))) {
    GTEST_SKIP() << "no oneDNN sgemm in this process: the direct step does not apply";
  }
  const int saved_threads = at::get_num_threads();
  for (bool learned : {false, true}) {
    for (int threads : {1, 2}) {
      for (float push : {0.0f, 3.0f, -11.0f}) {
        SCOPED_TRACE(absl::StrCat(learned ? "learned" : "fixed", " prior, ", threads,
                                  " threads, log σ biases ", push));
        at::set_num_threads(threads);
        CvaeModelOptions options = SmallOptions(learned, /*seed=*/21);
        std::unique_ptr<CvaeModel> direct = Make(options);
        options.direct_cpu_step = false;
        std::unique_ptr<CvaeModel> reference = Make(options);
        ASSERT_TRUE(direct != nullptr && reference != nullptr);
        if (push != 0.0f) {
          PushLogStdBiases(direct.get(), push);
          PushLogStdBiases(reference.get(), push);
        }
        std::mt19937 rng(5);
        for (int step = 0; step < 3; ++step) {
          const WindowBatch batch = Windows(640, rng);
          at::Tensor g_direct, g_reference;
          absl::StatusOr<Losses> l_direct = direct->Gradient(batch, &g_direct);
          absl::StatusOr<Losses> l_reference = reference->Gradient(batch, &g_reference);
          ASSERT_TRUE(l_direct.ok()) << l_direct.status();
          ASSERT_TRUE(l_reference.ok()) << l_reference.status();
          ASSERT_EQ(l_direct->size(), l_reference->size());
          for (const auto& [name, value] : *l_reference) {
            EXPECT_NEAR(l_direct->at(name), value, 1e-5 * std::max(1.0, std::abs(value))) << name;
          }
          const double scale = g_reference.abs().max().item<double>();
          ASSERT_GT(scale, 0.0);
          EXPECT_LE((g_direct - g_reference).abs().max().item<double>(), 1e-4 * scale)
              << "step " << step;
          if (push != 0.0f) {
            EXPECT_EQ((g_direct == 0).sum().item<int64_t>(),
                      (g_reference == 0).sum().item<int64_t>());
          }
          ASSERT_TRUE(direct->TrainStep(batch).ok());
          ASSERT_TRUE(reference->TrainStep(batch).ok());
        }
      }
    }
  }
  at::set_num_threads(saved_threads);
}

}  // namespace
}  // namespace prl::models
