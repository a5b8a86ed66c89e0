#include "learner/collect_run.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/dataset_reader.h"
#include "common/sha256.h"
#include "common/tensor.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "learner/actor_registry.h"
#include "learner/dataset_store.h"
#include "learner/policy_store.h"
#include "learner/recording_run_context.h"
#include "prometheus/registry.h"

namespace prl::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kObs = 4;  // point_maze
constexpr int kAct = 2;

// One row of a collection table; its values say where it came from, so tests can check order.
struct Row {
  int64_t episode;
  int64_t step;
  bool terminal = false;
  bool timeout = false;
};

float ObsValue(const Row& r) { return static_cast<float>(r.episode * 1000 + r.step); }

// The rows as a Sample answer of a collection table (columns in CollectTableConfig's order).
v1::SampleResponse Rows(const std::vector<Row>& rows) {
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> obs, act, reward, discount, next, timeout;
  std::vector<int64_t> episode, step;
  for (const Row& r : rows) {
    for (int d = 0; d < kObs; ++d) obs.push_back(ObsValue(r));
    for (int d = 0; d < kAct; ++d) act.push_back(0.5f);
    reward.push_back(r.terminal ? 1.0f : 0.0f);
    discount.push_back(r.terminal ? 0.0f : 1.0f);
    for (int d = 0; d < kObs; ++d) next.push_back(ObsValue(r) + 1);
    timeout.push_back(r.timeout ? 1.0f : 0.0f);
    episode.push_back(r.episode);
    step.push_back(r.step);
  }
  v1::SampleResponse response;
  auto add = [&](const char* name, HostTensor tensor) {
    v1::NamedTensor* c = response.add_columns();
    c->set_name(name);
    TensorToProto(std::move(tensor), c->mutable_tensor());
  };
  auto ints = [&](const std::vector<int64_t>& values) {
    HostTensor t = *HostTensor::Zeros(DType::kInt64, {n});
    std::copy(values.begin(), values.end(), t.mutable_data<int64_t>().begin());
    return t;
  };
  add("observation", HostTensor::FromFloats({n, kObs}, obs));
  add("action", HostTensor::FromFloats({n, kAct}, act));
  add("reward", HostTensor::FromFloats({n}, reward));
  add("discount", HostTensor::FromFloats({n}, discount));
  add("next_observation", HostTensor::FromFloats({n, kObs}, next));
  add("episode", ints(episode));
  add("step", ints(step));
  add("timeout", HostTensor::FromFloats({n}, timeout));
  for (int64_t i = 0; i < n; ++i) response.add_keys(static_cast<uint64_t>(i));
  return response;
}

// Every row of `episodes` complete episodes of `lengths`, ids from `first_id`; the last row of
// episode k terminates when k is even and times out otherwise.
std::vector<Row> Episodes(int64_t first_id, const std::vector<int>& lengths) {
  std::vector<Row> rows;
  for (size_t k = 0; k < lengths.size(); ++k) {
    for (int s = 0; s < lengths[k]; ++s) {
      const bool last = s + 1 == lengths[k];
      rows.push_back(
          {first_id + static_cast<int64_t>(k), s, last && k % 2 == 0, last && k % 2 == 1});
    }
  }
  return rows;
}

TEST(EpisodeAssemblerTest, PutsRowsThatArriveOutOfOrderBackIntoEpisodes) {
  // three episodes of three envs, shuffled, spread over several answers, one row sent twice
  std::vector<Row> rows = Episodes(7, {5, 3, 4});
  std::mt19937 rng(3);
  std::shuffle(rows.begin(), rows.end(), rng);
  rows.push_back(rows[2]);
  EpisodeAssembler assembler(kObs, kAct);
  const absl::Time now = absl::Now();
  for (size_t begin = 0; begin < rows.size(); begin += 4) {
    const std::vector<Row> part(rows.begin() + begin,
                                rows.begin() + std::min(rows.size(), begin + 4));
    ASSERT_TRUE(assembler.Add(Rows(part), now).ok());
  }
  std::vector<EpisodeAssembler::Episode> episodes = assembler.TakeComplete();
  ASSERT_EQ(episodes.size(), 3u);
  std::sort(episodes.begin(), episodes.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  const int lengths[] = {5, 3, 4};
  for (int k = 0; k < 3; ++k) {
    const EpisodeAssembler::Episode& e = episodes[k];
    EXPECT_EQ(e.id, 7 + k);
    ASSERT_EQ(e.length, lengths[k]);
    for (int64_t s = 0; s < e.length; ++s) {
      EXPECT_EQ(e.observations[s * kObs], ObsValue({7 + k, s})) << "episode " << k << " row " << s;
      EXPECT_EQ(e.next_observations[s * kObs + 3], ObsValue({7 + k, s}) + 1);
    }
    EXPECT_EQ(e.terminated, k % 2 == 0);
    EXPECT_EQ(e.timed_out, k % 2 == 1);
    EXPECT_EQ(e.episode_return(), k % 2 == 0 ? 1.0 : 0.0);
  }
  EXPECT_EQ(assembler.duplicate_rows(), 1);
  EXPECT_EQ(assembler.pending_episodes(), 0);
  EXPECT_EQ(assembler.pending_rows(), 0);
  // a late copy of a row of a completed episode does not bring it back
  ASSERT_TRUE(assembler.Add(Rows({{8, 2, /*terminal=*/false, /*timeout=*/true}}), now).ok());
  EXPECT_THAT(assembler.TakeComplete(), IsEmpty());
  EXPECT_EQ(assembler.duplicate_rows(), 2);
}

TEST(EpisodeAssemblerTest, AnEpisodeMissingARowNeverCompletesAndGoesStale) {
  EpisodeAssembler assembler(kObs, kAct);
  std::vector<Row> rows = Episodes(1, {4});
  rows.erase(rows.begin() + 1);  // step 1 was lost (its actor died, or an insert failed)
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(assembler.Add(Rows(rows), t0).ok());
  ASSERT_TRUE(assembler.Add(Rows({{2, 0}, {2, 1}}), t0 + absl::Seconds(10)).ok());  // unfinished
  EXPECT_THAT(assembler.TakeComplete(), IsEmpty());
  EXPECT_EQ(assembler.pending_episodes(), 2);
  EXPECT_EQ(assembler.pending_rows(), 5);
  EXPECT_EQ(assembler.DropStale(t0 + absl::Seconds(5)), 1);
  EXPECT_EQ(assembler.pending_episodes(), 1);
  EXPECT_EQ(assembler.pending_rows(), 2);
  // the lost row coming after all is ignored once its episode was dropped
  ASSERT_TRUE(assembler.Add(Rows({{1, 1}}), t0 + absl::Seconds(11)).ok());
  EXPECT_THAT(assembler.TakeComplete(), IsEmpty());
}

TEST(EpisodeAssemblerTest, MalformedRowsAreRefusedNamingTheColumn) {
  EpisodeAssembler assembler(kObs, kAct);
  v1::SampleResponse rows = Rows(Episodes(1, {2}));
  v1::SampleResponse no_step = rows;
  no_step.mutable_columns()->erase(no_step.mutable_columns()->begin() + 6);
  EXPECT_THAT(assembler.Add(no_step, absl::Now()).message(), HasSubstr("no column 'step'"));
  v1::SampleResponse bad_step = Rows({{1, -3}});
  EXPECT_THAT(assembler.Add(bad_step, absl::Now()).message(), HasSubstr("'step': row 0 has -3"));
  v1::SampleResponse wide = rows;
  *wide.mutable_columns(0) = Rows(Episodes(1, {3})).columns(0);  // 3 rows beside 2
  EXPECT_EQ(assembler.Add(wide, absl::Now()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.pending_rows(), 0);
}

TEST(CollectTableConfigTest, IsAQueueThatHandsEachRowOutOnce) {
  const v1::TableConfig config = CollectTableConfig("exp-1.collect", kObs, kAct, 5000);
  EXPECT_EQ(config.sampler(), v1::SAMPLER_FIFO);
  EXPECT_EQ(config.max_times_sampled(), 1);
  EXPECT_EQ(config.rate_limiter().samples_per_insert(), 0);
  EXPECT_EQ(config.rate_limiter().min_size_to_sample(), 1);
  EXPECT_EQ(config.capacity(), 5000);
  std::vector<std::string> names;
  for (const v1::ColumnSpec& c : config.signature()) names.push_back(c.name());
  EXPECT_THAT(names, ElementsAre("observation", "action", "reward", "discount", "next_observation",
                                 "episode", "step", "timeout"));
}

// ---- the run, with a scripted replay and a real registry and dataset store ----

// The replay as the actors fill it: answers queued by the test, handed out in order.
struct ScriptedReplay {
  absl::Mutex mu;
  std::deque<v1::SampleResponse> answers ABSL_GUARDED_BY(mu);
  std::vector<v1::TableConfig> created ABSL_GUARDED_BY(mu);
  std::vector<std::string> deleted ABSL_GUARDED_BY(mu);
  int drains_when_empty ABSL_GUARDED_BY(mu) = 0;
};

class ScriptedSource final : public CollectSource {
 public:
  explicit ScriptedSource(ScriptedReplay* replay) : replay_(replay) {}
  absl::Status CreateTable(const v1::TableConfig& config) override {
    absl::MutexLock lock(&replay_->mu);
    replay_->created.push_back(config);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<v1::SampleResponse>> Drain(const std::string&, int) override {
    absl::MutexLock lock(&replay_->mu);
    if (replay_->answers.empty()) {
      ++replay_->drains_when_empty;
      return std::vector<v1::SampleResponse>();
    }
    std::vector<v1::SampleResponse> out = {replay_->answers.front()};
    replay_->answers.pop_front();
    return out;
  }
  absl::Status DeleteTable(const std::string& table) override {
    absl::MutexLock lock(&replay_->mu);
    replay_->deleted.push_back(table);
    return absl::OkStatus();
  }

 private:
  ScriptedReplay* replay_;
};

class CollectRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(testing::TempDir(), "/collect_",
                         testing::UnitTest::GetInstance()->current_test_info()->name());
    mkdir(root_.c_str(), 0755);
    work_dir_ = root_ + "/exp-000001";
    mkdir(work_dir_.c_str(), 0755);
    datasets_ = *DatasetStore::Open(root_ + "/datasets");
    options_.registry = &registry_;
    options_.datasets = datasets_.get();
    options_.work_dir = work_dir_;
    options_.replay_addresses = {"shard-a:1", "shard-b:2"};
    options_.source_factory = [this](const std::vector<std::string>&) {
      return absl::StatusOr<std::unique_ptr<CollectSource>>(
          std::make_unique<ScriptedSource>(&replay_));
    };
    options_.idle_wait = absl::Milliseconds(5);
    options_.progress_period = absl::ZeroDuration();
    // an actor that has joined: it gets the collection assignment
    v1::JoinRequest join;
    join.set_actor_name("actor-0");
    join.set_num_envs(4);
    actor_id_ = registry_.Join(join).actor_id();
  }

  v1::Experiment Experiment(const std::string& collect) {
    v1::Experiment e;
    e.set_id("exp-000001");
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        absl::StrCat(R"pb(
                       name: "collect"
                       kind: KIND_COLLECT
                       env { domain: DOMAIN_POINT_MAZE seed: 5 }
                       replay { capacity: 1000 }
                       resources { num_actors: 1 envs_per_actor: 3 }
                       collect { collector: COLLECTOR_SCRIPTED output_dataset: "maze")pb",
                     collect, " }"),
        e.mutable_spec()));
    return e;
  }

  void Queue(const std::vector<Row>& rows) {
    absl::MutexLock lock(&replay_.mu);
    replay_.answers.push_back(Rows(rows));
  }

  ExperimentRun::Result RunToEnd(const v1::Experiment& e) {
    auto run = CreateCollectRun(e, &context_, options_);
    EXPECT_TRUE(run.ok()) << run.status();
    return (*run)->Run();
  }

  std::string root_, work_dir_;
  ActorRegistry registry_;
  std::unique_ptr<DatasetStore> datasets_;
  ScriptedReplay replay_;
  RecordingRunContext context_;
  CollectRunOptions options_;
  std::string actor_id_;
};

TEST_F(CollectRunTest, StoresWholeEpisodesInterleavedOverEnvsUntilNumEpisodes) {
  // three envs' episodes interleaved row by row, out of order within each answer, plus an
  // episode that never finishes; four complete episodes for a target of three
  std::vector<Row> a = Episodes(100, {6, 4}), b = Episodes(200, {5, 3}), c = Episodes(300, {7});
  c.pop_back();  // env 3's episode is still running when the dataset is full
  std::vector<Row> all;
  for (size_t i = 0; i < 10; ++i) {
    for (const std::vector<Row>* env : {&a, &b, &c}) {
      if (i < env->size()) all.push_back((*env)[i]);
    }
  }
  std::mt19937 rng(1);
  for (size_t begin = 0; begin < all.size(); begin += 5) {
    std::vector<Row> part(all.begin() + begin, all.begin() + std::min(all.size(), begin + 5));
    std::shuffle(part.begin(), part.end(), rng);
    Queue(part);
  }
  const ExperimentRun::Result result = RunToEnd(Experiment("num_episodes: 3"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "num_episodes reached");

  {
    absl::MutexLock lock(&replay_.mu);
    ASSERT_EQ(replay_.created.size(), 1u);
    EXPECT_EQ(replay_.created[0].name(), "exp-000001.collect");
    EXPECT_EQ(replay_.created[0].capacity(), 500);  // split over the two shards
    EXPECT_THAT(replay_.deleted, ElementsAre("exp-000001.collect"));
  }

  absl::StatusOr<v1::DatasetInfo> info = datasets_->Verify("maze");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->episodes(), 3);
  EXPECT_EQ(info->experiment_id(), "exp-000001");
  EXPECT_THAT(info->spec(), HasSubstr("output_dataset: \"maze\""));
  absl::StatusOr<Dataset> data = ReadDataset(info->path());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->obs_dim, kObs);
  EXPECT_EQ(info->transitions(), data->size);
  // whole episodes, each in step order; the unfinished one is not there
  const std::vector<int64_t> ends = data->EpisodeEnds();
  ASSERT_EQ(ends.size(), 3u);
  int64_t begin = 0;
  std::vector<int64_t> ids;
  for (int64_t end : ends) {
    const int64_t id = static_cast<int64_t>(data->observations[begin * kObs]) / 1000;
    ids.push_back(id);
    for (int64_t r = begin; r < end; ++r) {
      EXPECT_EQ(data->observations[r * kObs], ObsValue({id, r - begin})) << "row " << r;
    }
    EXPECT_NE(data->terminals[end - 1] != 0, data->timeouts[end - 1] != 0);
    begin = end;
  }
  for (int64_t id : ids) EXPECT_NE(id, 300);
  EXPECT_EQ(data->metadata.collector, "scripted:planner action_noise=0");
  EXPECT_THAT(data->metadata.env_spec, HasSubstr("DOMAIN_POINT_MAZE"));

  const v1::ExperimentOutputs outputs = context_.outputs();
  EXPECT_EQ(outputs.dataset(), "maze");
  EXPECT_EQ(outputs.dataset_path(), info->path());
  EXPECT_EQ(outputs.dataset_episodes(), 3);
  EXPECT_EQ(outputs.dataset_transitions(), data->size);
  EXPECT_EQ(outputs.dataset_hash(), *Sha256File(info->path()));
  const v1::Progress progress = context_.progress();
  EXPECT_EQ(progress.episodes(), 3);
  EXPECT_EQ(progress.env_steps(), data->size);
  EXPECT_DOUBLE_EQ(progress.fraction_done(), 1.0);
  EXPECT_THAT(progress.message(), HasSubstr("collecting dataset 'maze'"));
  // nothing is left in the experiment's directory but what was there
  struct stat st;
  EXPECT_NE(stat((work_dir_ + "/collect-1.hdf5").c_str(), &st), 0);
}

TEST_F(CollectRunTest, NumEnvStepsCountsStoredTransitionsOfWholeEpisodes) {
  Queue(Episodes(1, {4, 4, 4}));
  const ExperimentRun::Result result = RunToEnd(Experiment("num_env_steps: 6"));
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  EXPECT_EQ(result.reason, "num_env_steps reached");
  absl::StatusOr<v1::DatasetInfo> info = datasets_->Lookup("maze");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->transitions(), 8);  // the episode that crossed 6 is kept whole
  EXPECT_EQ(info->episodes(), 2);
}

TEST_F(CollectRunTest, AStopStoresNothingAndAShutdownResumesWithTheClosedSegments) {
  options_.first_segment_period = absl::ZeroDuration();  // every drain closes a segment
  Queue(Episodes(1, {3, 3}));
  Queue({{9, 0}, {9, 1}});  // an unfinished episode
  {
    auto run = CreateCollectRun(Experiment("num_episodes: 4"), &context_, options_);
    ASSERT_TRUE(run.ok());
    absl::StatusOr<v1::HeartbeatResponse> assigned;
    std::thread stopper([&] {
      // once the answers are drained, the learner shuts down
      {
        absl::MutexLock lock(&replay_.mu);
        replay_.mu.Await(absl::Condition(
            +[](decltype(replay_)* r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return r->answers.empty() && r->drains_when_empty > 0;
            },
            &replay_));
      }
      v1::HeartbeatRequest heartbeat;
      heartbeat.set_actor_id(actor_id_);
      assigned = registry_.Heartbeat(heartbeat);
      (*run)->RequestStop("learner shutdown", /*shutdown=*/true);
    });
    const ExperimentRun::Result result = (*run)->Run();
    stopper.join();
    EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_RUNNING);
    // the actor was given the collection: the table with its episode columns, the collector
    ASSERT_TRUE(assigned.ok()) << assigned.status();
    const v1::Assignment& a = assigned->assignment();
    EXPECT_EQ(a.mode(), v1::Assignment::MODE_COLLECT);
    EXPECT_EQ(a.experiment_id(), "exp-000001");
    EXPECT_EQ(a.table(), "exp-000001.collect");
    EXPECT_EQ(a.num_envs(), 3);
    EXPECT_THAT(a.replay_addresses(), ElementsAre("shard-a:1", "shard-b:2"));
    EXPECT_EQ(a.signature_size(), 8);
    EXPECT_EQ(a.signature(5).name(), "episode");
    EXPECT_EQ(a.collect().collector(), v1::CollectSpec::COLLECTOR_SCRIPTED);
  }
  EXPECT_FALSE(datasets_->Exists("maze"));
  {
    absl::MutexLock lock(&replay_.mu);
    EXPECT_THAT(replay_.deleted, IsEmpty());  // the table stays for the resumed run
    replay_.drains_when_empty = 0;
  }

  // the next start has the two episodes already; two more finish the dataset
  Queue(Episodes(20, {2, 2}));
  const ExperimentRun::Result resumed = RunToEnd(Experiment("num_episodes: 4"));
  ASSERT_EQ(resumed.state, v1::EXPERIMENT_STATE_SUCCEEDED) << resumed.reason;
  absl::StatusOr<v1::DatasetInfo> info = datasets_->Verify("maze");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->episodes(), 4);
  EXPECT_EQ(info->transitions(), 10);
  absl::StatusOr<Dataset> data = ReadDataset(info->path());
  ASSERT_TRUE(data.ok());
  EXPECT_THAT(data->EpisodeEnds(), ElementsAre(3, 6, 8, 10));

  // a stop: STOPPED, nothing stored, the table deleted
  v1::Experiment other = Experiment("num_episodes: 4");
  other.mutable_spec()->mutable_collect()->set_output_dataset("other");
  auto run = CreateCollectRun(other, &context_, options_);
  ASSERT_TRUE(run.ok());
  (*run)->RequestStop("stopped by user", /*shutdown=*/false);
  const ExperimentRun::Result stopped = (*run)->Run();
  EXPECT_EQ(stopped.state, v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_FALSE(datasets_->Exists("other"));
}

TEST_F(CollectRunTest, ANameStoredByAnotherExperimentFailsTheRun) {
  Queue(Episodes(1, {2}));
  ASSERT_EQ(RunToEnd(Experiment("num_episodes: 1")).state, v1::EXPERIMENT_STATE_SUCCEEDED);
  v1::Experiment second = Experiment("num_episodes: 1");
  second.set_id("exp-000002");
  const ExperimentRun::Result result = RunToEnd(second);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("collect.output_dataset"));
  EXPECT_THAT(result.reason, HasSubstr("already stored"));
  // the same experiment started again (its learner died after storing) just succeeds
  const ExperimentRun::Result again = RunToEnd(Experiment("num_episodes: 1"));
  EXPECT_EQ(again.state, v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(context_.outputs().dataset(), "maze");
}

TEST_F(CollectRunTest, APolicyCollectorNeedsALoaderAndAFlatPolicy) {
  v1::Experiment e = Experiment("num_episodes: 1");
  e.mutable_spec()->mutable_collect()->set_collector(v1::CollectSpec::COLLECTOR_POLICY);
  e.mutable_spec()->mutable_collect()->mutable_policy()->set_experiment_id("exp-000009");
  ExperimentRun::Result result = RunToEnd(e);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("COLLECTOR_POLICY is not supported"));

  PolicyStore policies;
  options_.policies = &policies;
  options_.policy_loader = [](const v1::PolicyRef& ref) -> absl::StatusOr<CollectPolicy> {
    auto policy = std::make_shared<v1::Policy>();
    policy->set_experiment_id(ref.experiment_id());
    policy->set_version(12);
    policy->mutable_architecture()->set_output(v1::PolicyArchitecture::OUTPUT_ACTION);
    policy->mutable_architecture()->set_obs_dim(kObs);
    policy->mutable_architecture()->set_action_dim(kAct);
    CollectPolicy out;
    out.policy = policy;
    return out;
  };
  Queue(Episodes(1, {2}));
  result = RunToEnd(e);
  ASSERT_EQ(result.state, v1::EXPERIMENT_STATE_SUCCEEDED) << result.reason;
  // the actors fetch it under the collect experiment's id
  absl::StatusOr<std::shared_ptr<const v1::Policy>> published =
      policies.Wait("exp-000001", 1, absl::Now());
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ((*published)->architecture().action_dim(), kAct);

  options_.policy_loader = [](const v1::PolicyRef&) -> absl::StatusOr<CollectPolicy> {
    auto policy = std::make_shared<v1::Policy>();
    policy->mutable_architecture()->set_output(v1::PolicyArchitecture::OUTPUT_DECODED_LATENT);
    CollectPolicy out;
    out.policy = policy;
    return out;
  };
  e.mutable_spec()->mutable_collect()->set_output_dataset("latent");
  result = RunToEnd(e);
  EXPECT_EQ(result.state, v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(result.reason, HasSubstr("latent policies"));
}

}  // namespace
}  // namespace prl::learner
