// N envs stepped as one batch by a pool of worker threads: actions in, observations, rewards
// and episode ends out, as contiguous row-major arrays. Envs whose episode ends are reset
// automatically; the observation that ended the episode is kept in `next_obs`.
//
//   BatchedEnv batch(std::move(envs), /*num_workers=*/2);
//   BatchedEnv::Output out;
//   batch.Reset(&out);                 // out.obs holds every env's first observation
//   batch.Step(actions, &out);         // actions: size() x act_dim()
//
// The calling thread is worker 0; num_workers - 1 threads are owned and joined by the batch.
// Not thread-safe: one thread calls Reset/Step at a time.
#ifndef PRL_ACTOR_ENVS_BATCHED_ENV_H_
#define PRL_ACTOR_ENVS_BATCHED_ENV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "actor/envs/env.h"

namespace prl::actor {

class BatchedEnv {
 public:
  // One step of the whole batch. Row i belongs to env i.
  struct Output {
    // Observation to act on next: after an episode ended, the new episode's first one.
    std::vector<float> obs;
    // Observation the step led to (the final one when the episode ended).
    std::vector<float> next_obs;
    std::vector<float> rewards;
    std::vector<uint8_t> terminated;
    std::vector<uint8_t> truncated;
    std::vector<uint8_t> success;
    // With set_record_info(true): each env's info (Env::GetInfo) for the state the step led
    // to, taken before any auto-reset; size() x info_dim().
    std::vector<float> next_info;
  };

  // `envs` must be non-empty with equal obs/act sizes; num_workers is clamped to [1, N].
  BatchedEnv(std::vector<std::unique_ptr<Env>> envs, int num_workers);
  ~BatchedEnv();
  BatchedEnv(const BatchedEnv&) = delete;
  BatchedEnv& operator=(const BatchedEnv&) = delete;

  int size() const { return static_cast<int>(envs_.size()); }
  int obs_dim() const { return obs_dim_; }
  int act_dim() const { return act_dim_; }
  int num_workers() const { return static_cast<int>(workers_.size()) + 1; }
  int info_dim() const { return info_dim_; }
  // Whether Step fills Output::next_info (off by default: it costs a copy per env).
  void set_record_info(bool record) { record_info_ = record; }
  Env& env(int i) { return *envs_[i]; }
  const Env& env(int i) const { return *envs_[i]; }

  // Resets every env; fills out->obs (and sizes every array).
  void Reset(Output* out);
  // Steps env i with row i of `actions` (size() x act_dim()).
  void Step(absl::Span<const float> actions, Output* out);

 private:
  // Runs fn(i) for every env, spread over the workers; returns when all are done.
  void ParallelFor(const std::function<void(int)>& fn);
  void WorkerLoop(int worker);
  void RunShare(int worker, const std::function<void(int)>& fn);

  std::vector<std::unique_ptr<Env>> envs_;
  int obs_dim_;
  int act_dim_;
  int info_dim_;
  bool record_info_ = false;
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  // Incremented for every ParallelFor; workers run each generation once.
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  const std::function<void(int)>* task_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_ENVS_BATCHED_ENV_H_
