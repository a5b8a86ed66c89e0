#include "actor/envs/batched_env.h"

#include <algorithm>

#include "common/logging.h"

namespace prl::actor {

BatchedEnv::BatchedEnv(std::vector<std::unique_ptr<Env>> envs, int num_workers)
    : envs_(std::move(envs)) {
  PRL_CHECK(!envs_.empty());
  obs_dim_ = envs_[0]->obs_dim();
  act_dim_ = envs_[0]->act_dim();
  info_dim_ = envs_[0]->info_dim();
  for (const auto& env : envs_) {
    PRL_CHECK(env->obs_dim() == obs_dim_ && env->act_dim() == act_dim_);
  }
  const int workers = std::clamp(num_workers, 1, size());
  for (int w = 1; w < workers; ++w) workers_.emplace_back([this, w] { WorkerLoop(w); });
}

BatchedEnv::~BatchedEnv() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void BatchedEnv::RunShare(int worker, const std::function<void(int)>& fn) {
  // contiguous shares keep each worker on its own envs' memory
  const int n = size();
  const int w = num_workers();
  const int begin = static_cast<int>(static_cast<int64_t>(n) * worker / w);
  const int end = static_cast<int>(static_cast<int64_t>(n) * (worker + 1) / w);
  for (int i = begin; i < end; ++i) fn(i);
}

void BatchedEnv::WorkerLoop(int worker) {
  int64_t seen = 0;
  while (true) {
    const std::function<void(int)>* task;
    {
      absl::MutexLock lock(&mu_);
      // the lambda runs under mu_ (Await holds it), which the analysis cannot see
      const auto ready = [this, seen]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stop_ || generation_ != seen;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = generation_;
      task = task_;
    }
    RunShare(worker, *task);
    absl::MutexLock lock(&mu_);
    --pending_;
  }
}

void BatchedEnv::ParallelFor(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    for (int i = 0; i < size(); ++i) fn(i);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    task_ = &fn;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  RunShare(0, fn);
  absl::MutexLock lock(&mu_);
  const auto finished = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pending_ == 0; };
  mu_.Await(absl::Condition(&finished));
  task_ = nullptr;
}

void BatchedEnv::Reset(Output* out) {
  const size_t n = envs_.size();
  out->obs.resize(n * obs_dim_);
  out->next_obs.resize(n * obs_dim_);
  out->rewards.assign(n, 0);
  out->terminated.assign(n, 0);
  out->truncated.assign(n, 0);
  out->success.assign(n, 0);
  out->next_info.assign(record_info_ ? n * info_dim_ : 0, 0.0f);
  ParallelFor([&](int i) {
    envs_[i]->Reset(absl::MakeSpan(out->obs).subspan(static_cast<size_t>(i) * obs_dim_, obs_dim_));
  });
  out->next_obs = out->obs;
}

void BatchedEnv::Step(absl::Span<const float> actions, Output* out) {
  const size_t n = envs_.size();
  PRL_CHECK(actions.size() == n * act_dim_)
      << actions.size() << " actions for " << n << " x " << act_dim_;
  if (out->obs.size() != n * obs_dim_) Reset(out);
  if (record_info_) out->next_info.resize(n * info_dim_);
  ParallelFor([&](int i) {
    const size_t row = static_cast<size_t>(i);
    absl::Span<float> next = absl::MakeSpan(out->next_obs).subspan(row * obs_dim_, obs_dim_);
    const StepResult r = envs_[i]->Step(actions.subspan(row * act_dim_, act_dim_), next);
    out->rewards[row] = r.reward;
    out->terminated[row] = r.terminated;
    out->truncated[row] = r.truncated;
    out->success[row] = r.success;
    if (record_info_) {
      envs_[i]->GetInfo(absl::MakeSpan(out->next_info).subspan(row * info_dim_, info_dim_));
    }
    absl::Span<float> obs = absl::MakeSpan(out->obs).subspan(row * obs_dim_, obs_dim_);
    if (r.done()) {
      envs_[i]->Reset(obs);
    } else {
      std::copy(next.begin(), next.end(), obs.begin());
    }
  });
}

}  // namespace prl::actor
