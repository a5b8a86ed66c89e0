#include "learner/experiment_manager.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::HasSubstr;

// A run that reports one curve point and then waits for Stop (or ends at once when told).
class FakeRun final : public ExperimentRun {
 public:
  // slow_stop (when set): a user's stop does not end the run (it winds down) until a shutdown
  // comes; the run notifies it when the user's stop arrives
  FakeRun(RunContext* context, bool end_at_once, bool truncate = false,
          absl::Notification* slow_stop = nullptr)
      : context_(context), end_at_once_(end_at_once), truncate_(truncate), slow_stop_(slow_stop) {}
  Result Run() override {
    v1::Progress p;
    p.set_env_steps(42);
    context_->ReportProgress(p);
    v1::CurvePoint point;
    point.set_env_steps(10);
    point.set_eval_return(1.5);
    context_->AddCurvePoint(point);
    if (truncate_) {
      // two more points, then a cut back to 20 env steps (a restored checkpoint's position)
      point.set_env_steps(20);
      context_->AddCurvePoint(point);
      point.set_env_steps(30);
      context_->AddCurvePoint(point);
      context_->TruncateCurve(20);
    }
    if (end_at_once_) return {v1::EXPERIMENT_STATE_SUCCEEDED, "max_env_steps reached"};
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopped_));
    return {shutdown_ ? v1::EXPERIMENT_STATE_RUNNING : v1::EXPERIMENT_STATE_STOPPED, reason_};
  }
  void RequestStop(const std::string& reason, bool shutdown) override {
    absl::MutexLock lock(&mu_);
    if (slow_stop_ != nullptr && !shutdown) {
      if (!slow_stop_->HasBeenNotified()) slow_stop_->Notify();
      return;
    }
    reason_ = reason;
    shutdown_ = shutdown;
    stopped_ = true;
  }

 private:
  RunContext* context_;
  bool end_at_once_;
  bool truncate_;
  absl::Notification* slow_stop_;
  absl::Mutex mu_;
  bool stopped_ = false;
  bool shutdown_ = false;
  std::string reason_;
};

class ExperimentManagerTest : public ::testing::Test {
 protected:
  std::string Dir() {
    return absl::StrCat(::testing::TempDir(), "/manager_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  std::unique_ptr<ExperimentManager> Start(const std::string& dir, bool end_at_once = false) {
    ExperimentManagerOptions options;
    options.state_dir = dir;
    options.validate = [](const v1::ExperimentSpec& spec) -> absl::StatusOr<v1::ExperimentSpec> {
      if (spec.name().empty()) return absl::InvalidArgumentError("name: \"\" is not allowed");
      v1::ExperimentSpec filled = spec;
      filled.set_description("filled");
      return filled;
    };
    options.on_state_counts = [this](const std::map<std::string, int>& counts) {
      absl::MutexLock lock(&counts_mu_);
      state_counts_ = counts;
    };
    options.run_factory =
        [this, end_at_once](const v1::Experiment& e,
                            RunContext* context) -> absl::StatusOr<std::unique_ptr<ExperimentRun>> {
      const int started = ++runs_started_;
      if (e.spec().name() == "broken" || (e.spec().name() == "breaks-on-restart" && started > 1)) {
        return absl::InternalError("cannot build");
      }
      return std::make_unique<FakeRun>(
          context, end_at_once, e.spec().name() == "truncating",
          e.spec().name() == "slow-stop" && started == 1 ? &user_stop_arrived_ : nullptr);
    };
    auto manager = ExperimentManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  }

  static v1::ExperimentSpec Spec(const std::string& name) {
    v1::ExperimentSpec spec;
    spec.set_name(name);
    spec.set_kind(v1::ExperimentSpec::KIND_TRAIN);
    return spec;
  }

  // Waits (bounded) until `id` is in `state`.
  static v1::Experiment AwaitState(ExperimentManager& m, const std::string& id,
                                   v1::ExperimentState state) {
    int64_t seen = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      absl::StatusOr<v1::Experiment> e = m.WaitForChange(id, &seen, deadline);
      EXPECT_TRUE(e.ok()) << e.status();
      if (!e.ok() || e->state() == state) return *e;
    }
    ADD_FAILURE() << id << " never reached " << v1::ExperimentState_Name(state);
    return {};
  }

  // Waits (bounded) until `id` has `points` curve points.
  static bool AwaitCurve(ExperimentManager& m, const std::string& id, int points) {
    int64_t seen = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      m.WaitForChange(id, &seen, deadline);
      if (m.Get(id, true)->curve_size() >= points) return true;
    }
    return false;
  }

  std::map<std::string, int> state_counts() {
    absl::MutexLock lock(&counts_mu_);
    return state_counts_;
  }

  std::atomic<int> runs_started_{0};
  absl::Notification user_stop_arrived_;  // at a "slow-stop" run
  absl::Mutex counts_mu_;
  std::map<std::string, int> state_counts_ ABSL_GUARDED_BY(counts_mu_);
};

TEST_F(ExperimentManagerTest, TruncatedCurvesStayTruncatedOnDisk) {
  const std::string dir = Dir();
  {
    auto m = Start(dir, /*end_at_once=*/true);
    absl::StatusOr<v1::Experiment> a = m->Submit(Spec("truncating"));
    ASSERT_TRUE(a.ok());
    const v1::Experiment done = AwaitState(*m, a->id(), v1::EXPERIMENT_STATE_SUCCEEDED);
    ASSERT_EQ(m->Get(a->id(), true)->curve_size(), 2);
    EXPECT_EQ(m->Get(a->id(), true)->curve(1).env_steps(), 20);
  }
  auto reloaded = Start(dir, /*end_at_once=*/true);
  const v1::Experiment e = *reloaded->Get("exp-000001", true);
  ASSERT_EQ(e.curve_size(), 2);
  EXPECT_EQ(e.curve(1).env_steps(), 20);
}

TEST_F(ExperimentManagerTest, StateCountsAreReportedOnEveryChange) {
  auto m = Start(Dir(), /*end_at_once=*/true);
  EXPECT_EQ(state_counts().at("queued"), 0);  // every state, zeros included, from the start
  absl::StatusOr<v1::Experiment> a = m->Submit(Spec("a"));
  ASSERT_TRUE(a.ok());
  AwaitState(*m, a->id(), v1::EXPERIMENT_STATE_SUCCEEDED);
  const std::map<std::string, int> counts = state_counts();
  EXPECT_EQ(counts.at("succeeded"), 1);
  EXPECT_EQ(counts.at("running"), 0);
  EXPECT_EQ(counts.at("queued"), 0);
}

TEST_F(ExperimentManagerTest, FifoQueueOneRunningAtATime) {
  auto m = Start(Dir());
  absl::StatusOr<v1::Experiment> a = m->Submit(Spec("a"));
  absl::StatusOr<v1::Experiment> b = m->Submit(Spec("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id(), "exp-000001");
  EXPECT_EQ(b->id(), "exp-000002");
  EXPECT_EQ(a->spec().description(), "filled");  // stored as validated
  AwaitState(*m, a->id(), v1::EXPERIMENT_STATE_RUNNING);
  v1::Experiment queued = *m->Get(b->id(), false);
  EXPECT_EQ(queued.state(), v1::EXPERIMENT_STATE_QUEUED);
  EXPECT_EQ(queued.queue_position(), 1);

  absl::StatusOr<v1::Experiment> stopped = m->Stop(a->id(), "");
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->state(), v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_EQ(stopped->end_reason(), "stopped by user");
  AwaitState(*m, b->id(), v1::EXPERIMENT_STATE_RUNNING);
  // Stop is idempotent for ended experiments
  EXPECT_EQ(m->Stop(a->id(), "again")->end_reason(), "stopped by user");
}

TEST_F(ExperimentManagerTest, ProgressCurveAndOutcome) {
  auto m = Start(Dir(), /*end_at_once=*/true);
  absl::StatusOr<v1::Experiment> a = m->Submit(Spec("a"));
  ASSERT_TRUE(a.ok());
  v1::Experiment done = AwaitState(*m, a->id(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(done.end_reason(), "max_env_steps reached");
  EXPECT_EQ(done.progress().env_steps(), 42);
  EXPECT_TRUE(done.has_end_time());
  v1::Experiment with_curve = *m->Get(a->id(), true);
  ASSERT_EQ(with_curve.curve_size(), 1);
  EXPECT_EQ(with_curve.curve(0).eval_return(), 1.5);
  EXPECT_EQ(m->Get(a->id(), false)->curve_size(), 0);
}

TEST_F(ExperimentManagerTest, FailedRunRecordsTheReason) {
  auto m = Start(Dir());
  absl::StatusOr<v1::Experiment> e = m->Submit(Spec("broken"));
  ASSERT_TRUE(e.ok());
  v1::Experiment failed = AwaitState(*m, e->id(), v1::EXPERIMENT_STATE_FAILED);
  EXPECT_EQ(failed.failure_reason(), "cannot build");
}

TEST_F(ExperimentManagerTest, BadInputIsRefusedAndNothingStored) {
  auto m = Start(Dir());
  EXPECT_EQ(m->Submit(Spec("")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->Get("exp-000001", false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m->Stop("nope", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m->List({}, 1001, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->List({}, 10, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->List({v1::EXPERIMENT_STATE_UNSPECIFIED}, 10, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(m->List({}, 0, "")->first.empty());
}

TEST_F(ExperimentManagerTest, ListIsNewestFirstFilteredAndPaged) {
  auto m = Start(Dir());
  for (const char* name : {"a", "b", "c", "d"}) ASSERT_TRUE(m->Submit(Spec(name)).ok());
  AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_RUNNING);
  auto page = m->List({}, 3, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->first.size(), 3u);
  EXPECT_EQ(page->first[0].id(), "exp-000004");
  EXPECT_EQ(page->second, "exp-000002");
  auto rest = m->List({}, 3, page->second);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->first.size(), 1u);
  EXPECT_EQ(rest->first[0].id(), "exp-000001");
  EXPECT_TRUE(rest->second.empty());
  auto queued = m->List({v1::EXPERIMENT_STATE_QUEUED}, 10, "");
  EXPECT_EQ(queued->first.size(), 3u);
}

TEST_F(ExperimentManagerTest, RestartResumesTheRunningExperimentFirstAndKeepsTheQueue) {
  const std::string dir = Dir();
  {
    auto m = Start(dir);
    ASSERT_TRUE(m->Submit(Spec("a")).ok());
    ASSERT_TRUE(m->Submit(Spec("b")).ok());
    AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_RUNNING);
    ASSERT_TRUE(AwaitCurve(*m, "exp-000001", 1));
    m->Shutdown();
    EXPECT_EQ(m->Get("exp-000001", false)->state(), v1::EXPERIMENT_STATE_RUNNING);
  }
  auto m = Start(dir);
  v1::Experiment resumed = AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_EQ(resumed.restarts(), 1);
  EXPECT_EQ(m->Get("exp-000002", false)->state(), v1::EXPERIMENT_STATE_QUEUED);
  EXPECT_TRUE(AwaitCurve(*m, "exp-000001", 2));  // one point per start
  // new ids continue after the stored ones
  EXPECT_EQ(m->Submit(Spec("c"))->id(), "exp-000003");
}

// A user's stop is saved before the run is asked to stop: a learner that goes down while the
// run winds down stops the experiment at its next start instead of training it again.
TEST_F(ExperimentManagerTest, AStopThatDidNotFinishBeforeARestartIsCarriedOut) {
  const std::string dir = Dir();
  {
    auto m = Start(dir);
    ASSERT_TRUE(m->Submit(Spec("slow-stop")).ok());
    AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_RUNNING);
    ASSERT_TRUE(AwaitCurve(*m, "exp-000001", 1));
    std::thread stopper([&] { m->Stop("exp-000001", "enough for today"); });
    // the stop is on disk before the run was asked; the run is still winding down
    ASSERT_TRUE(user_stop_arrived_.WaitForNotificationWithTimeout(absl::Seconds(20)));
    EXPECT_TRUE(std::ifstream(dir + "/experiments/exp-000001/stop_requested").good());
    EXPECT_EQ(m->Get("exp-000001", false)->state(), v1::EXPERIMENT_STATE_RUNNING);
    m->Shutdown();  // the learner goes down before the run ended: RUNNING on disk
    stopper.join();
    EXPECT_EQ(m->Get("exp-000001", false)->state(), v1::EXPERIMENT_STATE_RUNNING);
  }
  auto m = Start(dir);
  const v1::Experiment stopped = AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_STOPPED);
  EXPECT_EQ(stopped.end_reason(), "enough for today");
  EXPECT_EQ(runs_started_, 2);  // started again only to stop (its run releases what it holds)
  // an experiment resumed without a saved stop runs on
  ASSERT_TRUE(m->Submit(Spec("a")).ok());
  AwaitState(*m, "exp-000002", v1::EXPERIMENT_STATE_RUNNING);
}

// A resumed experiment that fails before its run reports anything does not keep saying that
// it resumes.
TEST_F(ExperimentManagerTest, AResumedRunThatFailsAtOnceDropsTheResumingMessage) {
  const std::string dir = Dir();
  {
    auto m = Start(dir);
    ASSERT_TRUE(m->Submit(Spec("breaks-on-restart")).ok());
    AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_RUNNING);
    ASSERT_TRUE(AwaitCurve(*m, "exp-000001", 1));
    m->Shutdown();
  }
  auto m = Start(dir);
  const v1::Experiment failed = AwaitState(*m, "exp-000001", v1::EXPERIMENT_STATE_FAILED);
  EXPECT_EQ(failed.failure_reason(), "cannot build");
  EXPECT_EQ(failed.progress().message(), "");
}

}  // namespace
}  // namespace prl::learner
