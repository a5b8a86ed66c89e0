// Fault injection on a real cluster under the local launcher's supervision: while a small SAC
// experiment trains, the learner is SIGKILLed before its first checkpoint, then a replay shard
// and then an actor, each at a moment drawn from a fixed seed. The launcher restarts each; the
// experiment must SUCCEED, and what Watch shows must hold together:
//  - policy versions never go backwards (reserved on disk, even without a checkpoint);
//  - env steps and updates never go backwards, except once, across the learner restart, where
//    they go back to what the learner had checkpointed (nothing: it died before its first) and
//    the run says so in Progress.message;
//  - after the shard and the actor die, env steps/s recover to >= 50% of the rate before the
//    fault within 60 s;
//  - no episode is counted twice: every counted training episode took 200 env steps (episodes
//    are fixed-length), so episodes * 200 <= env steps;
//  - the learning curve's points have increasing env steps (cut back on the restore).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/client.h"
#include "common/testing/subprocess.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "proto/experiment.grpc.pb.h"

namespace prl {
namespace {

using ::prl::testing::Runfile;
using ::prl::testing::Subprocess;

constexpr int kEpisodeLength = 200;
constexpr int64_t kMaxEnvSteps = 20000;

constexpr char kSpec[] = R"pb(
  name: "fault-injection"
  kind: KIND_TRAIN
  env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 200 seed: 7 }
  algorithm {
    sac {}
    network { hidden_sizes: [ 32, 32 ] }
    batch_size: 64
    actor_lr: 1e-3
    critic_lr: 1e-3
    warmup_env_steps: 1000
  }
  replay { capacity: 100000 min_size_to_sample: 1000 samples_per_insert: 64 }
  resources { num_actors: 2 envs_per_actor: 1 }
  stop { max_env_steps: 20000 }
  evaluation { every_env_steps: 5000 episodes: 2 }
)pb";

// One Watch snapshot.
struct Seen {
  absl::Time at;
  v1::Experiment experiment;
};

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = absl::StrCat(::testing::TempDir(), "/faults_", getpid());
    auto launcher = Subprocess::Start(
        {Runfile("deploy/local/cluster.sh"), "--no_setup", "--no_submit", "--no_prometheus",
         "--base_port", "0", "--actors", "2", "--bin_dir", Runfile(""), "--state_dir", state_dir_},
        {}, /*merge_stderr=*/true);
    ASSERT_TRUE(launcher.ok()) << launcher.status();
    launcher_ = std::move(*launcher);
    // the launcher's output is read all along (a full pipe would block it) and kept for failures
    reader_ = std::thread([this] {
      while (true) {
        absl::StatusOr<std::string> line = launcher_->ReadLine(absl::Minutes(10));
        if (!line.ok()) return;
        absl::MutexLock lock(&mu_);
        output_.push_back(*line);
      }
    });
    ASSERT_TRUE(AwaitOutput("running; Ctrl-C stops the cluster", absl::Minutes(3)))
        << LauncherOutput();
    env_ = ReadEnv();
    auto channel = CreateChannel({env_["PRL_LEARNER"]});
    ASSERT_TRUE(channel.ok());
    channel_ = *channel;
    stub_ = v1::ExperimentService::NewStub(channel_);
  }

  void TearDown() override {
    {
      absl::MutexLock lock(&mu_);
      watching_ = false;
      if (watch_context_ != nullptr) watch_context_->TryCancel();
    }
    if (watcher_.joinable()) watcher_.join();
    if (launcher_ != nullptr) {
      launcher_->Signal(SIGTERM);
      absl::StatusOr<int> status = launcher_->Wait(absl::Seconds(60));
      EXPECT_TRUE(status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "the launcher did not stop cleanly\n"
          << LauncherOutput();
    }
    if (reader_.joinable()) reader_.join();
  }

  // Waits for the launcher to print a line containing `text`.
  bool AwaitOutput(const std::string& text, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto printed = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      for (const std::string& line : output_) {
        if (absl::StrContains(line, text)) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&printed), timeout);
  }

  std::string LauncherOutput() {
    absl::MutexLock lock(&mu_);
    std::string out;
    const size_t from = output_.size() > 80 ? output_.size() - 80 : 0;
    for (size_t i = from; i < output_.size(); ++i) absl::StrAppend(&out, output_[i], "\n");
    return out;
  }

  std::map<std::string, std::string> ReadEnv() {
    std::map<std::string, std::string> env;
    std::ifstream in(state_dir_ + "/cluster.env");
    std::string line;
    while (std::getline(in, line)) {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return env;
  }

  // SIGKILLs the process cluster.env lists under `key` (e.g. PRL_REPLAY_2_PID).
  void Kill(const std::string& key) {
    const std::string pid = ReadEnv()[key];
    ASSERT_FALSE(pid.empty()) << key << " has no pid in cluster.env";
    std::cout << absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()) << " SIGKILL "
              << key << " " << pid << std::endl;
    ASSERT_EQ(kill(std::stoi(pid), SIGKILL), 0);
  }

  std::string Submit(const std::string& text = kSpec) {
    v1::SubmitRequest request;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, request.mutable_spec()));
    v1::SubmitResponse response;
    grpc::ClientContext context;
    PrepareContext({absl::Seconds(10)}, &context);
    grpc::Status s = stub_->Submit(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.id();
  }

  // Follows `id` through Watch on a thread, reconnecting whenever the learner goes away, and
  // records every snapshot.
  void StartWatching(const std::string& id) {
    watching_ = true;
    watcher_ = std::thread([this, id] {
      while (true) {
        auto context = std::make_shared<grpc::ClientContext>();
        PrepareContext({absl::Minutes(10)}, context.get());
        {
          absl::MutexLock lock(&mu_);
          if (!watching_) return;
          watch_context_ = context;
        }
        // a restarting learner: wait (bounded) for its port to accept connections again
        channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
        v1::WatchRequest request;
        request.set_id(id);
        request.set_min_interval_ms(250);
        auto reader = stub_->Watch(context.get(), request);
        v1::WatchResponse update;
        while (reader->Read(&update)) {
          absl::MutexLock lock(&mu_);
          seen_.push_back({absl::Now(), update.experiment()});
        }
        reader->Finish();
        absl::MutexLock lock(&mu_);
        watch_context_ = nullptr;
        if (!watching_) return;
      }
    });
  }

  // Waits until the latest snapshot satisfies `pred`; returns it.
  template <typename Pred>
  std::optional<v1::Experiment> AwaitSeen(absl::Duration timeout, Pred pred) {
    absl::MutexLock lock(&mu_);
    const auto done = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !seen_.empty() && pred(seen_.back().experiment);
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) return std::nullopt;
    return seen_.back().experiment;
  }

  std::vector<Seen> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

  // Env steps per second over [from, from + window) from the snapshots, or -1 without data.
  static double Rate(const std::vector<Seen>& s, absl::Time from, absl::Duration window) {
    const Seen* first = nullptr;
    const Seen* last = nullptr;
    for (const Seen& x : s) {
      if (x.at < from || x.at > from + window) continue;
      if (first == nullptr) first = &x;
      last = &x;
    }
    if (first == nullptr || last == first) return -1;
    return (last->experiment.progress().env_steps() - first->experiment.progress().env_steps()) /
           absl::ToDoubleSeconds(last->at - first->at);
  }

  std::string state_dir_;
  std::unique_ptr<Subprocess> launcher_;
  std::thread reader_, watcher_;
  std::map<std::string, std::string> env_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;

  absl::Mutex mu_;
  std::vector<std::string> output_ ABSL_GUARDED_BY(mu_);
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::ClientContext> watch_context_ ABSL_GUARDED_BY(mu_);
};

TEST_F(FaultInjectionTest, TrainingSurvivesKilledLearnerShardAndActor) {
  std::mt19937 rng(20261129);
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  StartWatching(id);
  const std::string checkpoint = state_dir_ + "/learner/experiments/" + id + "/checkpoint.bin";

  // 1. the learner, soon after its run started and before its first checkpoint (10 s): at an
  //    env-step count drawn from the seed, within the first seconds of the run
  const int64_t learner_at = std::uniform_int_distribution<int64_t>(100, 1500)(rng);
  ASSERT_TRUE(AwaitSeen(absl::Minutes(2), [&](const v1::Experiment& e) {
    return e.progress().env_steps() >= learner_at;
  })) << LauncherOutput();
  const bool had_checkpoint = access(checkpoint.c_str(), F_OK) == 0;
  Kill("PRL_LEARNER_PID");
  EXPECT_FALSE(had_checkpoint) << "the learner had checkpointed before it was killed";
  ASSERT_TRUE(AwaitOutput("learner is back", absl::Minutes(1))) << LauncherOutput();

  // 2. a replay shard, 3. an actor, each at env steps drawn from the seed
  const int64_t shard_at = std::uniform_int_distribution<int64_t>(5000, 8000)(rng);
  const int64_t actor_at = std::uniform_int_distribution<int64_t>(11000, 14000)(rng);
  ASSERT_TRUE(AwaitSeen(absl::Minutes(3), [&](const v1::Experiment& e) {
    return e.progress().env_steps() >= shard_at;
  })) << LauncherOutput();
  const absl::Time shard_killed = absl::Now();
  Kill("PRL_REPLAY_2_PID");
  ASSERT_TRUE(AwaitSeen(absl::Minutes(3), [&](const v1::Experiment& e) {
    return e.progress().env_steps() >= actor_at;
  })) << LauncherOutput();
  const absl::Time actor_killed = absl::Now();
  Kill("PRL_ACTOR_1_PID");

  const std::optional<v1::Experiment> done =
      AwaitSeen(absl::Minutes(4), [](const v1::Experiment& e) {
        return e.state() != v1::EXPERIMENT_STATE_QUEUED &&
               e.state() != v1::EXPERIMENT_STATE_RUNNING;
      });
  ASSERT_TRUE(done.has_value()) << LauncherOutput();
  EXPECT_EQ(done->state(), v1::EXPERIMENT_STATE_SUCCEEDED) << done->DebugString();
  EXPECT_GE(done->progress().env_steps(), kMaxEnvSteps);
  EXPECT_GE(done->restarts(), 1);

  // what Watch showed
  const std::vector<Seen> s = seen();
  int64_t version = 0, steps = 0, updates = 0;
  int drops = 0;
  for (const Seen& x : s) {
    const v1::Progress& p = x.experiment.progress();
    EXPECT_GE(p.policy_version(), version) << "policy version went back";
    version = std::max(version, p.policy_version());
    if (p.env_steps() < steps || p.updates() < updates) {
      ++drops;
      EXPECT_TRUE(absl::StrContains(p.message(), "restarted without a checkpoint") ||
                  absl::StrContains(p.message(), "resumed from the checkpoint") ||
                  absl::StrContains(p.message(), "the learner restarted"))
          << "counters went back (" << steps << " -> " << p.env_steps() << " env steps) with "
          << "no restore announced: '" << p.message() << "'";
    }
    steps = p.env_steps();
    updates = p.updates();
    // no episode counted twice: each took a whole 200-step episode of env steps
    EXPECT_LE(p.episodes() * kEpisodeLength, p.env_steps() + 2 * kEpisodeLength) << p.DebugString();
  }
  EXPECT_LE(drops, 1) << "counters went back more than once (only the learner restart may)";

  // throughput recovers within 60 s of the shard and actor kills, to half the rate before the
  // kill, or before the shard kill where that is lower: the actor may be killed within seconds of
  // the shard's recovery, while the actors' buffered steps drain in a burst (twice the steady
  // rate) that is no baseline
  const double steady = Rate(s, shard_killed - absl::Seconds(10), absl::Seconds(10));
  for (const auto& [name, at] :
       {std::make_pair("replay-2", shard_killed), std::make_pair("actor-1", actor_killed)}) {
    double before = Rate(s, at - absl::Seconds(10), absl::Seconds(10));  // -1: no data
    if (steady > 0 && (before <= 0 || steady < before)) before = steady;
    double best_after = -1;
    for (int k = 0; k <= 50; k += 5) {
      best_after = std::max(best_after, Rate(s, at + absl::Seconds(k), absl::Seconds(10)));
    }
    std::cout << name << " killed: " << before << " env steps/s before, best 10 s window "
              << best_after << " within 60 s after" << std::endl;
    if (before > 0) {
      EXPECT_GE(best_after, 0.5 * before) << name;
    }
  }

  // the curve: increasing env steps, no point of the lost stretch left
  v1::GetRequest get;
  get.set_id(id);
  get.set_include_curve(true);
  v1::GetResponse got;
  grpc::ClientContext context;
  PrepareContext({absl::Seconds(10)}, &context);
  ASSERT_TRUE(stub_->Get(&context, get, &got).ok());
  int64_t last = -1;
  for (const v1::CurvePoint& p : got.experiment().curve()) {
    EXPECT_GT(p.env_steps(), last) << got.experiment().DebugString();
    last = p.env_steps();
  }
}

// The long chaos run (tests:chaos_test, tagged manual): for PRL_CHAOS_MINUTES (default 20)
// minutes a random process — the learner, a replay shard or an actor — is SIGKILLed every
// 3,000-9,000 env steps of a long SAC run; then the run is stopped. The same invariants as
// above hold over the whole run (counters go back only across announced restores, one per
// learner kill at most); the recovery time after each kill is printed for docs/operations.md.
TEST_F(FaultInjectionTest, ChaosRun) {
  const char* minutes_env = std::getenv("PRL_CHAOS_MINUTES");
  const int minutes = minutes_env != nullptr ? std::atoi(minutes_env) : 20;
  std::string spec = kSpec;
  spec.replace(spec.find("max_env_steps: 20000"), 20, "max_env_steps: 100000000");
  const std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  StartWatching(id);
  std::mt19937 rng(7);
  const char* victims[] = {"PRL_LEARNER_PID", "PRL_REPLAY_1_PID", "PRL_REPLAY_2_PID",
                           "PRL_ACTOR_1_PID", "PRL_ACTOR_2_PID"};
  struct KillRecord {
    std::string victim;
    absl::Time at;
  };
  std::vector<KillRecord> kills;
  const absl::Time end = absl::Now() + absl::Minutes(minutes);
  int learner_kills = 0;
  while (absl::Now() < end) {
    const std::optional<v1::Experiment> now = AwaitSeen(
        absl::Minutes(3),
        [](const v1::Experiment& e) { return e.state() == v1::EXPERIMENT_STATE_RUNNING; });
    ASSERT_TRUE(now.has_value()) << LauncherOutput();
    const int64_t at =
        now->progress().env_steps() + std::uniform_int_distribution<int64_t>(3000, 9000)(rng);
    ASSERT_TRUE(AwaitSeen(absl::Minutes(5),
                          [&](const v1::Experiment& e) { return e.progress().env_steps() >= at; }))
        << "no progress to " << at << " env steps\n"
        << LauncherOutput();
    const std::string victim = victims[std::uniform_int_distribution<int>(0, 4)(rng)];
    // a process still waiting for its restart has no pid yet: pick again
    if (ReadEnv()[victim].empty()) continue;
    Kill(victim);
    kills.push_back({victim, absl::Now()});
    if (victim == "PRL_LEARNER_PID") ++learner_kills;
  }
  // stop the run; the learner may be restarting from the last kill: retry while it is away
  grpc::Status stop_status;
  for (int attempt = 0; attempt < 60; ++attempt) {
    channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::StopRequest stop;
    stop.set_id(id);
    v1::StopResponse stopped;
    grpc::ClientContext context;
    PrepareContext({absl::Seconds(10)}, &context);
    stop_status = stub_->Stop(&context, stop, &stopped);
    if (stop_status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        stop_status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      break;
    }
  }
  ASSERT_TRUE(stop_status.ok()) << stop_status.error_message();
  const std::optional<v1::Experiment> done =
      AwaitSeen(absl::Minutes(2),
                [](const v1::Experiment& e) { return e.state() == v1::EXPERIMENT_STATE_STOPPED; });
  ASSERT_TRUE(done.has_value()) << LauncherOutput();

  const std::vector<Seen> s = seen();
  int64_t version = 0, steps = 0;
  int drops = 0;
  for (const Seen& x : s) {
    const v1::Progress& p = x.experiment.progress();
    EXPECT_GE(p.policy_version(), version);
    version = std::max(version, p.policy_version());
    if (p.env_steps() < steps) ++drops;
    steps = p.env_steps();
    EXPECT_LE(p.episodes() * kEpisodeLength, p.env_steps() + 4 * kEpisodeLength) << p.DebugString();
  }
  EXPECT_LE(drops, learner_kills);
  std::cout << "chaos: " << kills.size() << " kills in " << minutes << " min, "
            << done->progress().env_steps() << " env steps, " << done->progress().updates()
            << " updates, policy v" << done->progress().policy_version() << ", restarts "
            << done->restarts() << std::endl;
  for (const KillRecord& k : kills) {
    const double before = Rate(s, k.at - absl::Seconds(10), absl::Seconds(10));
    double recovered_after = -1;
    for (int sec = 0; sec <= 120; sec += 2) {
      if (Rate(s, k.at + absl::Seconds(sec), absl::Seconds(10)) >= 0.5 * before) {
        recovered_after = sec + 10;
        break;
      }
    }
    std::cout << "chaos kill " << k.victim << ": " << before
              << " env steps/s before; back to >= 50% within " << recovered_after << " s"
              << std::endl;
  }
}

}  // namespace
}  // namespace prl
