// What an AssignmentRunner needs from the loop that owns it: whether to stop, waits that end
// when it must stop, the evaluation rounds the learner asks for, the learner calls it makes,
// and the heartbeat counters it feeds. ActorLoop implements it; the interface keeps the runner
// free of the learner connection.
#ifndef PRL_ACTOR_RUNNER_HOST_H_
#define PRL_ACTOR_RUNNER_HOST_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/actor.pb.h"

namespace prl::actor {

// What a runner needs from the loop that owns it. Implementations are thread-safe.
class RunnerHost {
 public:
  virtual ~RunnerHost() = default;

  // True once the runner must return: the actor stops or its assignment changed.
  virtual bool Interrupted() = 0;
  // Waits for `timeout`; returns early, true, when interrupted.
  virtual bool Wait(absl::Duration timeout) = 0;
  // Waits up to `timeout` (zero: just looks) for an evaluation request of this assignment with a
  // round above `after_round`; nullopt when there is none or the wait was interrupted.
  virtual std::optional<v1::EvaluationRequest> Evaluation(int64_t after_round,
                                                          absl::Duration timeout) = 0;

  // ActorService.GetPolicy with deadline `timeout`. Errors: the call's status.
  virtual absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& request,
                                                          absl::Duration timeout) = 0;
  // ActorService.ReportEpisodes with deadline `timeout`; the host fills actor_id and env_steps.
  // Errors: the call's status; UNAVAILABLE while the actor is not joined.
  virtual absl::StatusOr<v1::ReportEpisodesResponse> ReportEpisodes(
      v1::ReportEpisodesRequest request, absl::Duration timeout) = 0;

  // Adds to the counters heartbeats carry; returns the cumulative env steps under the current
  // generation (EpisodeSummary.env_steps).
  virtual int64_t AddProgress(int64_t env_steps, int64_t episodes, int64_t items_inserted) = 0;
  // The policy version the actor acts with now (0 during warm-up).
  virtual void SetActingVersion(int64_t version) = 0;
  // A number for an episode that just ended (ReportEpisodesRequest.first_sequence): from 1,
  // increasing over the whole actor process, never reused by a later runner, so a learner that
  // saw an earlier runner's reports (also one restarted meanwhile) never takes new episodes for
  // repeats.
  virtual int64_t NumberEpisode() = 0;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_RUNNER_HOST_H_
