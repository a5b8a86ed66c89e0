#include "learner/experiment_manager.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::learner {
namespace {

// Progress.message of an experiment that resumes, until its run reports where it resumed.
constexpr char kResumingMessage[] =
    "the learner restarted; the run resumes from its last checkpoint";

void SetNow(google::protobuf::Timestamp* ts) {
  const absl::Time now = absl::Now();
  ts->set_seconds(absl::ToUnixSeconds(now));
  ts->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(now) % 1000000000));
}

bool Terminal(v1::ExperimentState state) {
  return state == v1::EXPERIMENT_STATE_SUCCEEDED || state == v1::EXPERIMENT_STATE_FAILED ||
         state == v1::EXPERIMENT_STATE_STOPPED;
}

}  // namespace

// The RunContext of the running experiment: forwards reports into its entry.
class ExperimentManager::Context final : public RunContext {
 public:
  Context(ExperimentManager* manager, std::string id) : manager_(manager), id_(std::move(id)) {}

  void ReportProgress(const v1::Progress& progress) override {
    absl::MutexLock lock(&manager_->mu_);
    Entry& entry = manager_->entries_.at(id_);
    const bool new_version =
        progress.policy_version() > entry.experiment.progress().policy_version();
    *entry.experiment.mutable_progress() = progress;
    SetNow(entry.experiment.mutable_progress()->mutable_update_time());
    if (new_version) {
      // a policy version is persisted before anyone sees it, so the record a restarted
      // learner shows never has an older one
      manager_->Changed(entry);
      return;
    }
    // other progress is frequent: persisted with the next state change or curve point
    entry.changes++;
  }
  void AddCurvePoint(const v1::CurvePoint& point) override {
    absl::MutexLock lock(&manager_->mu_);
    Entry& entry = manager_->entries_.at(id_);
    entry.curve.push_back(point);
    if (absl::Status s = manager_->store_.SaveCurve(id_, entry.curve); !s.ok()) {
      PRL_LOG(ERROR) << "cannot save the curve of " << id_ << ": " << s;
    }
    manager_->Changed(entry);
  }
  void TruncateCurve(int64_t env_steps) override {
    absl::MutexLock lock(&manager_->mu_);
    Entry& entry = manager_->entries_.at(id_);
    const size_t before = entry.curve.size();
    entry.curve.erase(
        std::remove_if(entry.curve.begin(), entry.curve.end(),
                       [env_steps](const v1::CurvePoint& p) { return p.env_steps() > env_steps; }),
        entry.curve.end());
    if (entry.curve.size() == before) return;
    PRL_LOG(INFO) << id_ << ": dropped " << before - entry.curve.size() << " curve points past "
                  << env_steps << " env steps (not in the checkpoint)";
    if (absl::Status s = manager_->store_.SaveCurve(id_, entry.curve); !s.ok()) {
      PRL_LOG(ERROR) << "cannot save the curve of " << id_ << ": " << s;
    }
    manager_->Changed(entry);
  }
  void SetOutputs(const v1::ExperimentOutputs& outputs) override {
    absl::MutexLock lock(&manager_->mu_);
    Entry& entry = manager_->entries_.at(id_);
    *entry.experiment.mutable_outputs() = outputs;
    manager_->Changed(entry);
  }

 private:
  ExperimentManager* manager_;
  std::string id_;
};

absl::StatusOr<std::unique_ptr<ExperimentManager>> ExperimentManager::Create(
    ExperimentManagerOptions options) {
  if (!options.run_factory || !options.validate) {
    return absl::InvalidArgumentError("ExperimentManager needs run_factory and validate");
  }
  PRL_ASSIGN_OR_RETURN(ExperimentStore store, ExperimentStore::Open(options.state_dir));
  PRL_ASSIGN_OR_RETURN(std::vector<v1::Experiment> stored, store.LoadAll());
  std::unique_ptr<ExperimentManager> manager(
      new ExperimentManager(std::move(options), std::move(store)));
  {
    absl::MutexLock lock(&manager->mu_);
    std::vector<std::string> queued;
    for (v1::Experiment& experiment : stored) {
      const std::string id = experiment.id();
      Entry& entry = manager->entries_[id];
      PRL_ASSIGN_OR_RETURN(entry.curve, manager->store_.LoadCurve(id));
      manager->order_.push_back(id);
      if (experiment.state() == v1::EXPERIMENT_STATE_RUNNING) {
        // interrupted by a learner stop or crash: runs again first, from its checkpoint
        experiment.set_restarts(experiment.restarts() + 1);
        experiment.set_state(v1::EXPERIMENT_STATE_QUEUED);
        // the stored counters may lag what was shown before the restart; say so until the run
        // reports where it resumed
        experiment.mutable_progress()->set_message(kResumingMessage);
        manager->queue_.push_front(id);
        if (std::optional<std::string> stop = manager->store_.LoadStopRequest(id)) {
          // stopped by a user while it wound down: it starts only to end as asked (its run
          // releases what it holds)
          manager->pending_stop_ = *stop;
          experiment.mutable_progress()->set_message(
              "the learner restarted while the run was stopping; it stops now");
          PRL_LOG(INFO) << id << " was stopping; it stops (" << *stop << ")";
        } else {
          PRL_LOG(INFO) << id << " was running; it resumes (restart " << experiment.restarts()
                        << ")";
        }
      } else if (experiment.state() == v1::EXPERIMENT_STATE_QUEUED) {
        queued.push_back(id);
      }
      entry.experiment = std::move(experiment);
    }
    for (const std::string& id : queued) manager->queue_.push_back(id);
    manager->RenumberQueue();
    for (const std::string& id : manager->queue_) manager->Changed(manager->entries_[id]);
    manager->ReportStateCounts();
  }
  manager->scheduler_ = std::thread([m = manager.get()] { m->SchedulerLoop(); });
  return manager;
}

ExperimentManager::ExperimentManager(ExperimentManagerOptions options, ExperimentStore store)
    : options_(std::move(options)), store_(std::move(store)) {}

ExperimentManager::~ExperimentManager() { Shutdown(); }

void ExperimentManager::Changed(Entry& entry) {
  entry.changes++;
  if (absl::Status s = store_.Save(entry.experiment); !s.ok()) {
    PRL_LOG(ERROR) << "cannot save " << entry.experiment.id() << ": " << s;
  }
  ReportStateCounts();
}

void ExperimentManager::ReportStateCounts() {
  if (options_.on_state_counts == nullptr) return;
  std::map<std::string, int> counts;
  const google::protobuf::EnumDescriptor* states = v1::ExperimentState_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    const int number = states->value(i)->number();
    if (number == v1::EXPERIMENT_STATE_UNSPECIFIED) continue;
    counts[absl::AsciiStrToLower(
        absl::StripPrefix(states->value(i)->name(), "EXPERIMENT_STATE_"))] = 0;
  }
  for (const auto& [id, entry] : entries_) {
    counts[absl::AsciiStrToLower(absl::StripPrefix(
        v1::ExperimentState_Name(entry.experiment.state()), "EXPERIMENT_STATE_"))]++;
  }
  options_.on_state_counts(counts);
}

void ExperimentManager::RenumberQueue() {
  int position = 1;
  for (const std::string& id : queue_) {
    entries_[id].experiment.set_queue_position(position++);
  }
}

void ExperimentManager::End(Entry& entry, v1::ExperimentState state, const std::string& reason) {
  // the placeholder of a resumed run that ended before it reported (a failed setup)
  if (entry.experiment.progress().message() == kResumingMessage) {
    entry.experiment.mutable_progress()->clear_message();
  }
  entry.experiment.set_state(state);
  entry.experiment.set_queue_position(0);
  if (state == v1::EXPERIMENT_STATE_FAILED) {
    entry.experiment.set_failure_reason(reason);
  }
  entry.experiment.set_end_reason(reason);
  SetNow(entry.experiment.mutable_end_time());
  PRL_LOG(INFO) << entry.experiment.id() << " " << v1::ExperimentState_Name(state) << ": "
                << reason;
  Changed(entry);
}

absl::StatusOr<v1::Experiment> ExperimentManager::Submit(const v1::ExperimentSpec& spec) {
  PRL_ASSIGN_OR_RETURN(v1::ExperimentSpec filled, options_.validate(spec));
  absl::MutexLock lock(&mu_);
  if (shutdown_) return absl::UnavailableError("the learner is shutting down");
  const std::string id = store_.NewId();
  Entry& entry = entries_[id];
  entry.experiment.set_id(id);
  *entry.experiment.mutable_spec() = std::move(filled);
  entry.experiment.set_state(v1::EXPERIMENT_STATE_QUEUED);
  SetNow(entry.experiment.mutable_submit_time());
  if (absl::Status s = store_.Save(entry.experiment); !s.ok()) {
    entries_.erase(id);
    return s;
  }
  order_.push_back(id);
  queue_.push_back(id);
  RenumberQueue();
  Changed(entry);
  PRL_LOG(INFO) << "submitted " << id << " (" << entry.experiment.spec().name() << ")";
  return entry.experiment;
}

absl::StatusOr<v1::Experiment> ExperimentManager::Get(const std::string& id,
                                                      bool include_curve) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no experiment ", id));
  }
  v1::Experiment experiment = it->second.experiment;
  if (include_curve) {
    for (const v1::CurvePoint& p : it->second.curve) *experiment.add_curve() = p;
  }
  return experiment;
}

absl::StatusOr<std::pair<std::vector<v1::Experiment>, std::string>> ExperimentManager::List(
    const std::vector<v1::ExperimentState>& states, int page_size,
    const std::string& page_token) const {
  if (page_size < 0 || page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: ", page_size, " is not allowed; use 1..1000 (0 means 100)"));
  }
  if (page_size == 0) page_size = 100;
  for (v1::ExperimentState s : states) {
    if (s == v1::EXPERIMENT_STATE_UNSPECIFIED || !v1::ExperimentState_IsValid(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("states: ", static_cast<int>(s), " is not a state to filter by"));
    }
  }
  absl::MutexLock lock(&mu_);
  auto start = order_.rbegin();
  if (!page_token.empty()) {
    auto it = std::find(order_.rbegin(), order_.rend(), page_token);
    if (it == order_.rend()) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_token: \"", page_token, "\" is not a token List returned"));
    }
    start = std::next(it);
  }
  std::vector<v1::Experiment> page;
  std::string next;
  for (auto it = start; it != order_.rend(); ++it) {
    const v1::Experiment& e = entries_.at(*it).experiment;
    if (!states.empty() && std::find(states.begin(), states.end(), e.state()) == states.end()) {
      continue;
    }
    if (static_cast<int>(page.size()) == page_size) {
      next = page.back().id();
      break;
    }
    page.push_back(e);
  }
  return std::make_pair(std::move(page), next);
}

absl::StatusOr<v1::Experiment> ExperimentManager::Stop(const std::string& id,
                                                       const std::string& reason) {
  const std::string why = reason.empty() ? "stopped by user" : reason;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("id: no experiment ", id));
  Entry& entry = it->second;
  if (Terminal(entry.experiment.state())) return entry.experiment;
  if (entry.experiment.state() == v1::EXPERIMENT_STATE_QUEUED) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    RenumberQueue();
    End(entry, v1::EXPERIMENT_STATE_STOPPED, why);
    for (const std::string& q : queue_) entries_[q].changes++;
    return entry.experiment;
  }
  // running: save the request (a learner killed while the run winds down stops it at its next
  // start), ask the run to stop and wait for the scheduler to record its end
  if (absl::Status s = store_.SaveStopRequest(id, why); !s.ok()) {
    PRL_LOG(ERROR) << "cannot save the stop of " << id << ": " << s;
  }
  if (running_ == id) {
    if (run_ != nullptr) {
      run_->RequestStop(why, /*shutdown=*/false);
    } else {
      pending_stop_ = why;  // the run is being built: the scheduler hands it over
    }
  }
  const auto ended = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return Terminal(entry.experiment.state()) || shutdown_;
  };
  mu_.Await(absl::Condition(&ended));
  return entry.experiment;
}

absl::StatusOr<v1::Experiment> ExperimentManager::WaitForChange(const std::string& id,
                                                                int64_t* seen,
                                                                absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("id: no experiment ", id));
  const Entry& entry = it->second;
  const auto changed = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return entry.changes != *seen || shutdown_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  *seen = entry.changes;
  return entry.experiment;
}

void ExperimentManager::SchedulerLoop() {
  while (true) {
    std::string id;
    v1::Experiment experiment;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return shutdown_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (shutdown_) return;
      id = queue_.front();
      queue_.pop_front();
      RenumberQueue();
      Entry& entry = entries_[id];
      entry.experiment.set_state(v1::EXPERIMENT_STATE_RUNNING);
      entry.experiment.set_queue_position(0);
      if (!entry.experiment.has_start_time()) SetNow(entry.experiment.mutable_start_time());
      Changed(entry);
      for (const std::string& q : queue_) entries_[q].changes++;
      experiment = entry.experiment;
      running_ = id;
    }
    PRL_LOG(INFO) << "running " << id;
    Context context(this, id);
    absl::StatusOr<std::unique_ptr<ExperimentRun>> run = options_.run_factory(experiment, &context);
    ExperimentRun::Result result;
    if (!run.ok()) {
      result = {v1::EXPERIMENT_STATE_FAILED, std::string(run.status().message())};
    } else {
      {
        absl::MutexLock lock(&mu_);
        run_ = run->get();
        if (shutdown_) run_->RequestStop("learner shutting down", /*shutdown=*/true);
        if (!pending_stop_.empty()) run_->RequestStop(pending_stop_, /*shutdown=*/false);
        pending_stop_.clear();
      }
      result = (*run)->Run();
      {
        absl::MutexLock lock(&mu_);
        run_ = nullptr;
      }
      run->reset();  // the run releases its actors and replay before the state changes
    }
    absl::MutexLock lock(&mu_);
    running_.clear();
    pending_stop_.clear();
    Entry& entry = entries_[id];
    if (result.state == v1::EXPERIMENT_STATE_RUNNING) {
      Changed(entry);  // left RUNNING on disk: resumes at the next start
      return;
    }
    End(entry, result.state, result.reason);
  }
}

void ExperimentManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_ && !scheduler_.joinable()) return;
    shutdown_ = true;
    if (run_ != nullptr) run_->RequestStop("learner shutting down", /*shutdown=*/true);
  }
  if (scheduler_.joinable()) scheduler_.join();
}

}  // namespace prl::learner
