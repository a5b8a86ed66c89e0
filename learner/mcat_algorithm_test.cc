#include "learner/mcat_algorithm.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ATen/ATen.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/algorithm.h"
#include "learner/model_store.h"
#include "models/mcat_model.h"

namespace prl::learner {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Key;

constexpr int kObs = 5;
constexpr int kAct = 2;
constexpr int kK = 3;  // context history
constexpr int kM = 2;  // prediction horizon
constexpr int kW = kK + kM;
constexpr int kCtx = 4;
constexpr int kTasks = 3;
constexpr int kB = 16;

AlgorithmOptions Options(bool self_imitation = true, bool transfer = true) {
  AlgorithmOptions o;
  o.obs_dim = kObs;
  o.act_dim = kAct;
  o.device = "cpu";
  v1::AlgorithmSpec* a = o.spec.mutable_algorithm();
  v1::McatConfig* m = a->mutable_mcat();
  for (double scale : {0.5, 1.0, 1.5}) m->add_train_tasks()->set_armature_scale(scale);
  m->set_context_history(kK);
  m->set_prediction_horizon(kM);
  m->set_context_dim(kCtx);
  m->set_transfer_window_episodes(2);
  m->set_disable_self_imitation(!self_imitation);
  m->set_disable_policy_transfer(!transfer);
  a->mutable_network()->add_hidden_sizes(16);
  a->set_batch_size(kB);
  a->set_seed(3);
  return o;
}

// A batch of the actors' table (and, with `with_return`, of the self-imitation table).
Batch MakeBatch(int64_t seed, bool with_return = false) {
  at::manual_seed(seed);
  Batch b;
  at::Tensor history = at::randn({kB, kW + 1, kObs});
  at::Tensor actions = at::rand({kB, kW, kAct}) * 2 - 1;
  at::Tensor mask = at::ones({kB, kW});
  mask.index_put_({0, at::indexing::Slice(0, 2)}, 0);  // a row near its episode's start
  b.columns["history_observation"] = history;
  b.columns["history_action"] = actions;
  b.columns["history_mask"] = mask;
  b.columns["observation"] = history.select(1, kW - 1).clone();
  b.columns["next_observation"] = history.select(1, kW).clone();
  b.columns["action"] = actions.select(1, kW - 1).clone();
  b.columns["reward"] = at::randn({kB});
  b.columns["discount"] = at::ones({kB});
  b.columns["task_index"] = at::arange(kB, at::kLong).remainder(kTasks);
  if (with_return) {
    b.columns["return"] = at::full({kB}, 50.0);
    b.weight = at::ones({kB});
    for (int i = 0; i < kB; ++i) b.keys.push_back(100 + i);
  }
  return b;
}

v1::EpisodeSummary Episode(int task, double ret, bool transferred) {
  v1::EpisodeSummary e;
  e.set_task_index(task);
  e.set_episode_return(ret);
  e.set_transferred(transferred);
  e.set_policy_version(1);
  return e;
}

std::vector<int> Plan(const Algorithm& algorithm) {
  v1::TransferPlan plan;
  EXPECT_TRUE(algorithm.ExportTransfer(&plan));
  EXPECT_EQ(plan.task_contexts().shape_size(), 2);
  return {plan.source_task().begin(), plan.source_task().end()};
}

TEST(McatAlgorithmTest, TablesCarryTheHistoryAndTheSelfImitationBuffer) {
  auto algorithm = CreateMcatAlgorithm(Options()).value();
  EXPECT_EQ(algorithm->name(), "mcat");
  const std::vector<TableSpec> tables = algorithm->Tables();
  ASSERT_EQ(tables.size(), 2u);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const v1::ColumnSpec& c : tables[0].signature) {
    shapes[c.name()] = {c.shape().begin(), c.shape().end()};
  }
  EXPECT_THAT(shapes["history_observation"], ElementsAre(kW + 1, kObs));
  EXPECT_THAT(shapes["history_action"], ElementsAre(kW, kAct));
  EXPECT_THAT(shapes["history_mask"], ElementsAre(kW));
  EXPECT_THAT(shapes, Contains(Key("task_index")));
  EXPECT_EQ(tables[1].suffix, "_sil");
  EXPECT_TRUE(tables[1].sampled);
  EXPECT_FALSE(tables[1].rate_limited);
  EXPECT_TRUE(tables[0].rate_limited);
  EXPECT_TRUE(tables[1].episode_returns);
  EXPECT_EQ(tables[1].sampler, v1::SAMPLER_PRIORITIZED);
  EXPECT_EQ(tables[1].remover, v1::REMOVER_LOWEST_PRIORITY);
  EXPECT_EQ(tables[1].signature.back().name(), "return");

  v1::Assignment a;
  algorithm->DescribeActing(&a);
  EXPECT_EQ(a.tasks_size(), kTasks);
  EXPECT_EQ(a.decision_horizon(), 1);
  EXPECT_GT(a.episode_discount(), 0);

  auto without = CreateMcatAlgorithm(Options(/*self_imitation=*/false)).value();
  EXPECT_EQ(without->Tables().size(), 1u);
}

TEST(McatAlgorithmTest, UpdatesEveryComponentAndPrioritisesSelfImitationRows) {
  auto algorithm = CreateMcatAlgorithm(Options()).value();
  Batch batch = MakeBatch(1);
  batch.extra.push_back(MakeBatch(2, /*with_return=*/true));
  for (int step = 0; step < 3; ++step) {
    absl::StatusOr<UpdateResult> result = algorithm->Update(batch);
    ASSERT_TRUE(result.ok()) << result.status();
    for (const char* name : {"forward_loss", "contrastive_loss", "model_loss", "critic_loss",
                             "q_mean", "self_imitation_loss"}) {
      EXPECT_THAT(result->scalars, Contains(Key(name))) << name;
    }
    ASSERT_EQ(result->extra_priorities.size(), 1u);
    ASSERT_EQ(result->extra_priorities[0].size(), static_cast<size_t>(kB));
    // returns of 50 lie far above a fresh critic's values: every row has a positive gap
    for (double p : result->extra_priorities[0]) EXPECT_GT(p, 1.0);
  }
  EXPECT_EQ(algorithm->updates(), 3);

  // a batch without the self-imitation table's rows still trains
  ASSERT_TRUE(algorithm->Update(MakeBatch(4)).ok());

  Batch missing = MakeBatch(5);
  missing.columns.erase("history_mask");
  absl::StatusOr<UpdateResult> bad = algorithm->Update(missing);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("history_mask"));
}

TEST(McatAlgorithmTest, SelfImitationPrioritiesKeepTheBestTrajectories) {
  // the self-imitation table evicts its lowest priorities first (REMOVER_LOWEST_PRIORITY), and
  // a row's priority is (R - Q)_+: rows of high-return episodes stay, rows whose return the
  // critic already exceeds go
  auto algorithm = CreateMcatAlgorithm(Options()).value();
  Batch batch = MakeBatch(1);
  Batch sil = MakeBatch(2, /*with_return=*/true);
  at::Tensor returns = at::full({kB}, -100.0);
  returns.narrow(0, 0, kB / 2).fill_(100.0);
  sil.columns["return"] = returns;
  batch.extra.push_back(sil);
  const UpdateResult result = algorithm->Update(batch).value();
  ASSERT_EQ(result.extra_priorities.size(), 1u);
  const std::vector<double>& p = result.extra_priorities[0];
  ASSERT_EQ(p.size(), static_cast<size_t>(kB));
  for (int i = 0; i < kB / 2; ++i) EXPECT_GT(p[i], 50) << i;
  for (int i = kB / 2; i < kB; ++i) EXPECT_EQ(p[i], 0) << i;
}

TEST(McatAlgorithmTest, ExportedPolicyReadsObservationAndContext) {
  auto algorithm = CreateMcatAlgorithm(Options()).value();
  v1::PolicyArchitecture arch;
  std::vector<std::pair<std::string, HostTensor>> weights;
  ASSERT_TRUE(algorithm->ExportPolicy(&arch, &weights).ok());
  EXPECT_EQ(arch.obs_dim(), kObs);
  EXPECT_EQ(arch.context_dim(), kCtx);
  EXPECT_EQ(arch.context_history(), kK);
  EXPECT_EQ(arch.head(), v1::PolicyArchitecture::HEAD_DETERMINISTIC);
  EXPECT_EQ(arch.output(), v1::PolicyArchitecture::OUTPUT_ACTION);
  bool encoder = false, translator = false, trunk_wide = false;
  for (const auto& [name, tensor] : weights) {
    encoder |= name.rfind("context_encoder.", 0) == 0;
    translator |= name.rfind("translator.", 0) == 0;
    if (name == "trunk.0.weight") trunk_wide = tensor.shape().back() == kObs + kCtx;
    EXPECT_EQ(name.rfind("forward_model.", 0), std::string::npos) << name;
  }
  EXPECT_TRUE(encoder);
  EXPECT_TRUE(translator);
  EXPECT_TRUE(trunk_wide);
}

TEST(McatAlgorithmTest, TransferPlanFollowsRecentReturns) {
  auto algorithm = CreateMcatAlgorithm(Options()).value();
  // nothing seen: every task acts with its own policy
  EXPECT_THAT(Plan(*algorithm), ElementsAre(-1, -1, -1));

  // task 1 earns most: the others try its translated policy
  algorithm->ObserveEpisodes(
      {Episode(0, 10, false), Episode(1, 100, false), Episode(2, 20, false)});
  EXPECT_THAT(Plan(*algorithm), ElementsAre(1, -1, 1));

  // on task 0 the translation earned less than the learned policy: back to its own; on task 2
  // it earned more: keep it
  algorithm->ObserveEpisodes({Episode(0, 5, true), Episode(2, 60, true)});
  EXPECT_THAT(Plan(*algorithm), ElementsAre(-1, -1, 1));

  // evaluation and warm-up episodes do not count
  v1::EpisodeSummary eval = Episode(0, 1000, false);
  eval.set_is_eval(true);
  v1::EpisodeSummary warmup = Episode(0, 1000, false);
  warmup.set_policy_version(0);
  algorithm->ObserveEpisodes({eval, warmup});
  EXPECT_THAT(Plan(*algorithm), ElementsAre(-1, -1, 1));

  // the window: two new learned episodes of task 0 push out the old 10
  algorithm->ObserveEpisodes({Episode(0, 300, false), Episode(0, 300, false)});
  EXPECT_THAT(Plan(*algorithm), ElementsAre(-1, 0, 0));

  auto no_transfer = CreateMcatAlgorithm(Options(true, /*transfer=*/false)).value();
  no_transfer->ObserveEpisodes({Episode(0, 10, false), Episode(1, 100, false)});
  EXPECT_THAT(Plan(*no_transfer), ElementsAre(-1, -1, -1));
}

TEST(McatAlgorithmTest, StateRoundTripContinuesIdentically) {
  auto a = CreateMcatAlgorithm(Options()).value();
  Batch batch = MakeBatch(7);
  batch.extra.push_back(MakeBatch(8, true));
  ASSERT_TRUE(a->Update(batch).ok());
  a->ObserveEpisodes({Episode(0, 10, false), Episode(1, 100, false)});
  const std::string state = a->SaveState().value();

  auto b = CreateMcatAlgorithm(Options()).value();
  ASSERT_TRUE(b->RestoreState(state).ok());
  EXPECT_EQ(b->updates(), 1);
  EXPECT_EQ(Plan(*a), Plan(*b));
  const UpdateResult ra = a->Update(batch).value();
  const UpdateResult rb = b->Update(batch).value();
  EXPECT_EQ(ra.scalars, rb.scalars);
  EXPECT_EQ(a->Update(batch).value().scalars, b->Update(batch).value().scalars);

  EXPECT_EQ(b->RestoreState("not a state").code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(b->updates(), 3);  // nothing changed
}

TEST(McatAlgorithmTest, FinishStoresTheTranslatorAsAServableArtifact) {
  const std::string dir = ::testing::TempDir() + "/mcat-finish";
  auto store = ModelStore::Open(dir).value();
  AlgorithmOptions options = Options();
  options.experiment_id = "exp-000042";
  auto algorithm = CreateMcatAlgorithm(options, store.get()).value();
  Batch batch = MakeBatch(9);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(algorithm->Update(batch).ok());
  ASSERT_TRUE(algorithm->Finish().ok());
  // the end run again (a learner killed before the experiment's end was recorded resumes from
  // the final checkpoint): the same translator is not stored twice
  ASSERT_TRUE(algorithm->Finish().ok());
  EXPECT_FALSE(store->Read("exp-000042-translator", 2).ok());
  // after more training, the end stores the next version
  ASSERT_TRUE(algorithm->Update(batch).ok());
  ASSERT_TRUE(algorithm->Finish().ok());

  absl::StatusOr<models::ModelArtifact> stored = store->Read("exp-000042-translator", 0);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->info.version(), 2);
  EXPECT_EQ(stored->info.kind(), v1::PRIOR_KIND_ACTION_TRANSLATOR);
  EXPECT_EQ(stored->info.context_dim(), kCtx);
  EXPECT_THAT(stored->info.training_summary(), HasSubstr("exp-000042"));
  auto translator = models::TranslatorModel::FromArtifact(*stored, "cpu");
  ASSERT_TRUE(translator.ok()) << translator.status();
  const at::Tensor out = (*translator)
                             ->Translate(at::zeros({3, kObs}), at::zeros({3, kAct}),
                                         at::zeros({3, kCtx}), at::ones({3, kCtx}));
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{3, kAct}));

  // without a store (or an experiment id) there is nothing to store
  EXPECT_TRUE(CreateMcatAlgorithm(Options()).value()->Finish().ok());

  // without policy transfer nothing acts with the translator: it is neither trained nor stored
  AlgorithmOptions no_pt = Options(true, /*transfer=*/false);
  no_pt.experiment_id = "exp-000043";
  auto ablation = CreateMcatAlgorithm(no_pt, store.get()).value();
  const UpdateResult result = ablation->Update(batch).value();
  EXPECT_EQ(result.scalars.count("translator_loss"), 0u);
  EXPECT_EQ(result.scalars.count("forward_loss"), 1u);
  ASSERT_TRUE(ablation->Finish().ok());
  EXPECT_EQ(store->Read("exp-000043-translator", 0).status().code(), absl::StatusCode::kNotFound);
}

TEST(McatAlgorithmTest, RefusesFewerThanTwoTasks) {
  AlgorithmOptions o = Options();
  o.spec.mutable_algorithm()->mutable_mcat()->mutable_train_tasks()->DeleteSubrange(1, 2);
  absl::StatusOr<std::unique_ptr<Algorithm>> algorithm = CreateMcatAlgorithm(o);
  EXPECT_EQ(algorithm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(algorithm.status().message(), HasSubstr("algorithm.mcat.train_tasks"));
}

}  // namespace
}  // namespace prl::learner
