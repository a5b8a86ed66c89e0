// The learner's updates on a GPU: captured as CUDA graphs (AgentOptions::cuda_graphs) they
// compute what the eager updates compute, on the device and on the CPU, across the branches of
// SAC and TD3, weighted batches and restored checkpoints, and for the latent agents (spirl, eap)
// with their priors' forward passes in the graphs. Skipped where this process sees no
// CUDA device (every CPU build); scripts/cuda_build.sh builds it, and it runs on a GPU machine
// from the bundle (docs/development.md).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "absl/types/span.h"
#include "common/tensor.h"
#include "gtest/gtest.h"
#include "learner/agent.h"
#include "learner/agent_internal.h"
#include "learner/spirl_agent.h"
#include "models/cvae_model.h"
#include "models/skill_model.h"

namespace prl::learner {
namespace {

constexpr int kObs = 5;
constexpr int kAct = 3;

bool HasGpu() { return at::hasCUDA() && at::getNumGPUs() > 0; }

AgentOptions Options(bool td3, const std::string& device, bool graphs) {
  AgentOptions options;
  options.obs_dim = kObs;
  options.act_dim = kAct;
  if (td3) {
    options.algorithm.mutable_td3()->set_policy_delay(2);
  } else {
    options.algorithm.mutable_sac();
  }
  options.algorithm.mutable_network()->add_hidden_sizes(64);
  options.algorithm.mutable_network()->add_hidden_sizes(64);
  options.device = device;
  options.seed = 7;
  options.num_threads = 1;
  options.fast_cpu_gemm = false;
  options.cuda_graphs = graphs;
  return options;
}

std::unique_ptr<Agent> MustCreate(const AgentOptions& options) {
  auto agent = Agent::Create(options);
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? *std::move(agent) : nullptr;
}

std::vector<TransitionBatch> Batches(int count, int size, bool weighted) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  std::vector<TransitionBatch> batches(count);
  for (TransitionBatch& b : batches) {
    b.obs = at::randn({size, kObs}, gen, at::kFloat);
    b.action = at::rand({size, kAct}, gen, at::kFloat) * 2 - 1;
    b.reward = at::randn({size}, gen, at::kFloat);
    b.next_obs = at::randn({size, kObs}, gen, at::kFloat);
    b.discount = (at::rand({size}, gen, at::kFloat) > 0.1).to(at::kFloat);
    if (weighted) b.weight = at::rand({size}, gen, at::kFloat) + 0.5;
  }
  return batches;
}

TransitionBatch OnDevice(const TransitionBatch& b) {
  TransitionBatch d = b;
  for (at::Tensor* t : {&d.obs, &d.action, &d.reward, &d.next_obs, &d.discount, &d.weight}) {
    if (t->defined()) *t = t->to(at::kCUDA);
  }
  return d;
}

double RelDiff(double a, double b) { return std::abs(a - b) / std::max(std::abs(a), 1e-6); }

// The largest absolute difference between two agents' exported policy weights.
double PolicyDiff(const Agent& a, const Agent& b) {
  v1::PolicyArchitecture arch;
  std::vector<std::pair<std::string, HostTensor>> wa, wb;
  EXPECT_TRUE(a.ExportPolicy(&arch, &wa).ok());
  EXPECT_TRUE(b.ExportPolicy(&arch, &wb).ok());
  double worst = 0;
  for (size_t i = 0; i < wa.size() && i < wb.size(); ++i) {
    const absl::Span<const float> x = wa[i].second.data<float>();
    const absl::Span<const float> y = wb[i].second.data<float>();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      worst = std::max(worst, static_cast<double>(std::abs(x[k] - y[k])));
    }
  }
  return worst;
}

// Runs the same updates through each agent and checks that they agree update by update.
void ExpectSameUpdates(const std::vector<Agent*>& agents, const std::vector<TransitionBatch>& in,
                       int updates) {
  for (int i = 0; i < updates; ++i) {
    const TransitionBatch& host = in[i % in.size()];
    const TransitionBatch device = OnDevice(host);
    std::vector<UpdateStats> stats;
    for (Agent* agent : agents) {
      auto s = agent->Update(agent->device() == "cpu" ? host : device);
      ASSERT_TRUE(s.ok()) << s.status();
      stats.push_back(*std::move(s));
    }
    for (size_t k = 1; k < stats.size(); ++k) {
      SCOPED_TRACE(testing::Message() << "update " << i << ", agent " << k);
      EXPECT_EQ(stats[k].actor_updated, stats[0].actor_updated);
      // cuBLAS sums the products in another order than the CPU's GEMM: last-bit differences in
      // the weights, which the losses (a mean of squared differences of nearby values) amplify
      // (with ATen's fused Adam, whose rounding also differed, to ~1e-4 within 30 updates; Adam
      // is now bit for bit the CPU's). A wrong step count, branch or input would be off by
      // percents.
      EXPECT_LT(RelDiff(stats[k].critic_loss, stats[0].critic_loss), 1e-3);
      EXPECT_LT(RelDiff(stats[k].actor_loss, stats[0].actor_loss), 1e-3);
      EXPECT_LT(RelDiff(stats[k].alpha, stats[0].alpha), 1e-4);
      EXPECT_NEAR(stats[k].alpha_loss, stats[0].alpha_loss,
                  1e-4 * (1 + std::abs(stats[0].alpha_loss)));
      EXPECT_NEAR(stats[k].entropy, stats[0].entropy, 1e-4 * (1 + std::abs(stats[0].entropy)));
      ASSERT_EQ(stats[k].td_error_abs.size(), stats[0].td_error_abs.size());
      for (size_t j = 0; j < stats[0].td_error_abs.size(); ++j) {
        EXPECT_NEAR(stats[k].td_error_abs[j], stats[0].td_error_abs[j],
                    1e-4 * (1 + std::abs(stats[0].td_error_abs[j])));
      }
    }
  }
  for (size_t k = 1; k < agents.size(); ++k) {
    EXPECT_EQ(agents[k]->updates(), agents[0]->updates());
    EXPECT_LT(PolicyDiff(*agents[k], *agents[0]), 1e-4);
  }
}

class GraphTest : public testing::TestWithParam<bool> {};

TEST_P(GraphTest, GraphsMatchEagerUpdatesOnTheDeviceAndTheCpu) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  auto cpu = MustCreate(Options(td3, "cpu", false));
  auto eager = MustCreate(Options(td3, "cuda", false));
  auto graph = MustCreate(Options(td3, "cuda", true));
  // the warm-up, the capture of each branch and many replays of each
  ExpectSameUpdates({cpu.get(), eager.get(), graph.get()}, Batches(4, 64, false), 30);
}

TEST_P(GraphTest, EveryBranchOfTheTargetUpdatePeriodIsCaptured) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  // SAC: updates with and without the target update; TD3 (delay 2): critic-only updates, actor
  // updates with and without the target update
  AgentOptions eager_options = Options(td3, "cuda", false);
  eager_options.algorithm.set_target_update_period(2);
  AgentOptions graph_options = eager_options;
  graph_options.cuda_graphs = true;
  AgentOptions cpu_options = eager_options;
  cpu_options.device = "cpu";
  auto cpu = MustCreate(cpu_options);
  auto eager = MustCreate(eager_options);
  auto graph = MustCreate(graph_options);
  ExpectSameUpdates({cpu.get(), eager.get(), graph.get()}, Batches(4, 64, false), 40);
}

TEST_P(GraphTest, WeightedBatchesAndAnotherBatchSizeGetTheirOwnGraphs) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  auto eager = MustCreate(Options(td3, "cuda", false));
  auto graph = MustCreate(Options(td3, "cuda", true));
  std::vector<TransitionBatch> mixed = Batches(3, 64, true);
  for (TransitionBatch& b : Batches(2, 32, false)) mixed.push_back(b);
  ExpectSameUpdates({eager.get(), graph.get()}, mixed, 40);
}

TEST_P(GraphTest, RestoredStateContinuesThroughTheCapturedGraphs) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  const std::vector<TransitionBatch> batches = Batches(4, 64, false);
  auto graph = MustCreate(Options(td3, "cuda", true));
  auto eager = MustCreate(Options(td3, "cuda", false));
  ExpectSameUpdates({eager.get(), graph.get()}, batches, 12);  // graphs captured
  // another run's state, restored into the captured agent: its counters and Adam steps decide
  // the scalars and branches of the replays
  auto other = MustCreate(Options(td3, "cuda", false));
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(other->Update(OnDevice(batches[i % 4])).ok());
  auto state = other->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(graph->RestoreState(*state).ok());
  ExpectSameUpdates({other.get(), graph.get()}, batches, 12);
  auto saved = graph->SaveState();
  ASSERT_TRUE(saved.ok());
  auto resumed = MustCreate(Options(td3, "cpu", false));
  ASSERT_TRUE(resumed->RestoreState(*saved).ok());
  EXPECT_EQ(resumed->updates(), other->updates());
  EXPECT_LT(PolicyDiff(*resumed, *other), 1e-4);
}

TEST_P(GraphTest, UpdateManyQueuesTheReplaysAndMatchesOneUpdateAtATime) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  auto one = MustCreate(Options(td3, "cuda", true));
  auto many = MustCreate(Options(td3, "cuda", true));
  std::vector<TransitionBatch> batches;
  for (const TransitionBatch& b : Batches(6, 64, false)) batches.push_back(OnDevice(b));
  for (const TransitionBatch& b : Batches(2, 64, true)) batches.push_back(OnDevice(b));
  // calls of 8: the first warms up and captures, the later ones queue replays of every branch
  for (int call = 0; call < 4; ++call) {
    auto stats = many->UpdateMany(batches);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_EQ(stats->size(), batches.size());
    for (size_t i = 0; i < batches.size(); ++i) {
      SCOPED_TRACE(testing::Message() << "call " << call << ", batch " << i);
      auto expected = one->Update(batches[i]);
      ASSERT_TRUE(expected.ok());
      // the same kernels in the same order: equal up to the GPU's own nondeterminism
      EXPECT_EQ((*stats)[i].actor_updated, expected->actor_updated);
      EXPECT_LT(RelDiff((*stats)[i].critic_loss, expected->critic_loss), 1e-5);
      EXPECT_LT(RelDiff((*stats)[i].actor_loss, expected->actor_loss), 1e-5);
      ASSERT_EQ((*stats)[i].td_error_abs.size(), expected->td_error_abs.size());
    }
  }
  EXPECT_EQ(many->updates(), one->updates());
  EXPECT_LT(PolicyDiff(*many, *one), 1e-5);
}

TEST_P(GraphTest, GroupsOfUpdatesInOneGraphMatchOneGraphPerUpdate) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  // target period 2: SAC's branch alternates; TD3's (delay 2) runs through critic-only updates
  // and actor updates with and without the targets, so groups of 4 start at different phases
  AgentOptions options = Options(td3, "cuda", true);
  options.algorithm.set_target_update_period(2);
  auto one = MustCreate(options);
  options.updates_per_graph = 4;
  auto grouped = MustCreate(options);
  std::vector<TransitionBatch> plain, weighted;
  for (const TransitionBatch& b : Batches(8, 64, false)) plain.push_back(OnDevice(b));
  for (const TransitionBatch& b : Batches(3, 64, true)) weighted.push_back(OnDevice(b));
  // calls of 5, 6, 9, 4, 6 and 4 batches, three times over: the kinds' own graphs are captured
  // on their fourth update (call 2 for SAC, call 3 for TD3's rarer actor branches); from then on
  // each call replays a group of 4 (starting at every phase of the branches), the rest of the
  // call and the batches around a weighted one taking one graph per update
  const std::vector<std::vector<TransitionBatch>> calls = {
      {plain.begin(), plain.begin() + 5},
      {plain.begin() + 2, plain.end()},
      {plain[0], plain[1], weighted[0], plain[2], plain[3], plain[4], plain[5], plain[6], plain[7]},
      {plain.begin() + 1, plain.begin() + 5},
      {plain.begin(), plain.begin() + 6},
      {plain.begin() + 3, plain.begin() + 7}};
  for (int round = 0; round < 3; ++round) {
    for (size_t c = 0; c < calls.size(); ++c) {
      auto stats = grouped->UpdateMany(calls[c]);
      ASSERT_TRUE(stats.ok()) << stats.status();
      ASSERT_EQ(stats->size(), calls[c].size());
      for (size_t i = 0; i < calls[c].size(); ++i) {
        SCOPED_TRACE(testing::Message() << "round " << round << ", call " << c << ", batch " << i);
        auto expected = one->Update(calls[c][i]);
        ASSERT_TRUE(expected.ok());
        // the same kernels in the same order
        EXPECT_EQ((*stats)[i].actor_updated, expected->actor_updated);
        EXPECT_LT(RelDiff((*stats)[i].critic_loss, expected->critic_loss), 1e-5);
        EXPECT_LT(RelDiff((*stats)[i].actor_loss, expected->actor_loss), 1e-5);
        EXPECT_LT(RelDiff((*stats)[i].alpha, expected->alpha), 1e-6);
        ASSERT_EQ((*stats)[i].td_error_abs.size(), expected->td_error_abs.size());
        for (size_t j = 0; j < expected->td_error_abs.size(); ++j) {
          EXPECT_NEAR((*stats)[i].td_error_abs[j], expected->td_error_abs[j],
                      1e-5 * (1 + std::abs(expected->td_error_abs[j])));
        }
      }
    }
  }
  EXPECT_EQ(grouped->updates(), one->updates());
  EXPECT_LT(PolicyDiff(*grouped, *one), 1e-5);
  // the groups really ran as graphs: one per branch sequence (SAC: starting with or without the
  // target update; TD3: the four phases of its delay and target period), and one replay per call
  // from SAC's second call (TD3's third) on
  const auto* internal = dynamic_cast<const internal::TwinCriticAgent*>(grouped.get());
  ASSERT_NE(internal, nullptr);
  EXPECT_EQ(internal->group_graphs(), td3 ? 4u : 2u);
  EXPECT_EQ(internal->group_replays(), td3 ? 15 : 16);
  // the state (counters, Adam's steps and moments) carries over: a restored agent continues
  // the same way
  auto saved = grouped->SaveState();
  ASSERT_TRUE(saved.ok());
  AgentOptions eager_options = Options(td3, "cuda", false);
  eager_options.algorithm.set_target_update_period(2);
  auto resumed = MustCreate(eager_options);
  ASSERT_TRUE(resumed->RestoreState(*saved).ok());
  auto next_grouped = grouped->UpdateMany(calls[3]);
  ASSERT_TRUE(next_grouped.ok());
  for (size_t i = 0; i < calls[3].size(); ++i) {
    auto expected = resumed->Update(calls[3][i]);
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ((*next_grouped)[i].actor_updated, expected->actor_updated);
    EXPECT_LT(RelDiff((*next_grouped)[i].critic_loss, expected->critic_loss), 1e-3);
  }
}

// b's columns on the device as the replay feed stages a sampled batch (DeviceStager::StageAll):
// views of one block, each at a 256-byte boundary, in the table's column order, with a column
// the agent does not read among them.
TransitionBatch StagedOnDevice(const TransitionBatch& b) {
  TransitionBatch d = b;
  const at::Tensor steps = at::arange(b.obs.size(0), at::kLong);
  std::vector<at::Tensor*> columns = {&d.obs, &d.action, &d.reward, &d.discount, &d.next_obs};
  std::vector<at::Tensor> host;
  for (at::Tensor* t : columns) host.push_back(*t);
  host.push_back(steps);
  if (d.weight.defined()) {
    columns.push_back(&d.weight);
    host.push_back(d.weight);
  }
  std::vector<int64_t> offsets;
  int64_t end = 0;
  for (const at::Tensor& t : host) {
    offsets.push_back(end);
    end += (static_cast<int64_t>(t.nbytes()) + 255) / 256 * 256;
  }
  const at::Tensor block = at::empty({end}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
  std::vector<at::Tensor> views;
  for (size_t i = 0; i < host.size(); ++i) {
    at::Tensor v = block.narrow(0, offsets[i], static_cast<int64_t>(host[i].nbytes()))
                       .view(host[i].scalar_type())
                       .view(host[i].sizes());
    v.copy_(host[i]);
    views.push_back(v);
  }
  views.erase(views.begin() + 5);  // the steps column
  for (size_t i = 0; i < columns.size(); ++i) *columns[i] = views[i];
  return d;
}

TEST_P(GraphTest, StagedBatchesFillTheGraphInputsInOneCopy) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  const bool td3 = GetParam();
  // plain and prioritised batches (the importance weights last in the block, after a column the
  // agent does not read)
  for (const bool weighted : {false, true}) {
    SCOPED_TRACE(testing::Message() << "weighted " << weighted);
    auto plain = MustCreate(Options(td3, "cuda", true));
    auto staged = MustCreate(Options(td3, "cuda", true));
    const std::vector<TransitionBatch> batches = Batches(4, 64, weighted);
    // staged batches, each kind's graph captured from one; then plain batches (copied field by
    // field into the staged layout) and staged ones again
    std::vector<TransitionBatch> to_staged, to_plain;
    for (int i = 0; i < 16; ++i) {
      const TransitionBatch& b = batches[i % 4];
      to_plain.push_back(OnDevice(b));
      to_staged.push_back(i >= 8 && i < 11 ? OnDevice(b) : StagedOnDevice(b));
    }
    for (size_t i = 0; i < to_plain.size(); ++i) {
      SCOPED_TRACE(testing::Message() << "update " << i);
      auto expected = plain->Update(to_plain[i]);
      auto got = staged->Update(to_staged[i]);
      ASSERT_TRUE(expected.ok()) << expected.status();
      ASSERT_TRUE(got.ok()) << got.status();
      // the same inputs for the same kernels
      EXPECT_EQ(got->actor_updated, expected->actor_updated);
      EXPECT_LT(RelDiff(got->critic_loss, expected->critic_loss), 1e-5);
      EXPECT_LT(RelDiff(got->actor_loss, expected->actor_loss), 1e-5);
      ASSERT_EQ(got->td_error_abs.size(), expected->td_error_abs.size());
      for (size_t j = 0; j < expected->td_error_abs.size(); ++j) {
        EXPECT_NEAR(got->td_error_abs[j], expected->td_error_abs[j],
                    1e-5 * (1 + std::abs(expected->td_error_abs[j])));
      }
    }
    EXPECT_LT(PolicyDiff(*staged, *plain), 1e-5);
    // replays from the capture on (after 3 eager updates of each kind: SAC has one, TD3 two,
    // the critic-only and the actor updates), 3 of them of plain batches; 5 fields each, 6 with
    // weights
    const int replays = td3 ? 16 - 6 : 16 - 3;
    const int fields = weighted ? 6 : 5;
    const auto* p = dynamic_cast<const internal::TwinCriticAgent*>(plain.get());
    const auto* s = dynamic_cast<const internal::TwinCriticAgent*>(staged.get());
    ASSERT_NE(p, nullptr);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(p->graph_input_copies(), replays * fields);
    EXPECT_EQ(s->graph_input_copies(), (replays - 3) * 1 + 3 * fields);
  }
}

INSTANTIATE_TEST_SUITE_P(SacAndTd3, GraphTest, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Td3" : "Sac"; });

// The latent agents: spirl over a skill model's prior (the KL analytic and from Monte-Carlo
// draws) and eap over a CVAE's learned state prior, their updates captured with the prior's
// forward passes inside the graphs.
struct LatentCase {
  const char* name;
  bool cvae;
  int kl_samples;
};

class LatentGraphTest : public testing::TestWithParam<LatentCase> {};

// The same prior on `device` (through an artifact: the same weights everywhere).
std::shared_ptr<const models::LatentPriorModel> LatentPrior(bool cvae, const std::string& device) {
  v1::ModelInfo info;
  info.set_name("prior");
  info.set_version(1);
  auto make = [&](auto options, auto model) -> std::shared_ptr<const models::LatentPriorModel> {
    using Model = typename decltype(model)::element_type;
    options.obs_dim = kObs;
    options.act_dim = 2;
    options.horizon = 4;
    options.latent_dim = kAct;
    options.network.add_hidden_sizes(32);
    options.seed = 5;
    auto artifact = Model::Create(options).value()->ToArtifact(info);
    EXPECT_TRUE(artifact.ok()) << artifact.status();
    return Model::FromArtifact(*artifact, at::Device(device)).value();
  };
  if (!cvae) return make(models::SkillModelOptions(), std::unique_ptr<models::SkillModel>());
  models::CvaeModelOptions options;
  options.learned_prior = true;  // EAP's p(z|s)
  return make(options, std::unique_ptr<models::CvaeModel>());
}

std::unique_ptr<Agent> LatentAgent(const LatentCase& c, const std::string& device, bool graphs) {
  AgentOptions options = Options(/*td3=*/false, device, graphs);
  options.algorithm.mutable_spirl()->set_kl_samples(c.kl_samples);
  auto agent = CreateSpirlAgent(options, LatentPrior(c.cvae, device));
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? *std::move(agent) : nullptr;
}

TEST_P(LatentGraphTest, GraphsMatchEagerUpdatesOnTheDeviceAndTheCpu) {
  if (!HasGpu()) GTEST_SKIP() << "no CUDA device";
  auto cpu = LatentAgent(GetParam(), "cpu", false);
  auto eager = LatentAgent(GetParam(), "cuda", false);
  auto graph = LatentAgent(GetParam(), "cuda", true);
  ASSERT_NE(graph, nullptr);
  ExpectSameUpdates({cpu.get(), eager.get(), graph.get()}, Batches(4, 64, false), 30);
  // the updates from the fourth on were replays of one graph (one kind: a batch of 64 without
  // weights, the target networks updated every time), each filling its 5 inputs
  const auto* internal = dynamic_cast<const internal::TwinCriticAgent*>(graph.get());
  ASSERT_NE(internal, nullptr);
  EXPECT_EQ(internal->graph_input_copies(), (30 - 3) * 5);
}

INSTANTIATE_TEST_SUITE_P(SpirlAndEap, LatentGraphTest,
                         testing::Values(LatentCase{"SpirlAnalytic", false, 0},
                                         LatentCase{"SpirlMonteCarlo", false, 2},
                                         LatentCase{"Eap", true, 0}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace prl::learner
