// The interface between the learner's training loop (learner/training_run.h) and a training
// algorithm. The loop owns the data feed, the evaluation schedule, checkpoints, policy
// publication and metrics; an Algorithm owns its networks, optimisers and random streams and
// turns batches into gradient updates. An AlgorithmRegistry (learner/algorithm_registry.h)
// builds one from the experiment spec.
//
// The interface is shaped for every algorithm of DESIGN section 7, not only the flat ones:
//  - flat SAC/TD3 act every env step on (s, a, r, s') rows of one replay table;
//  - latent agents (SPiRL, EAP, latent SAC) act every H env steps (`decision_horizon`), their
//    rows carry the latent z as "action", the reward summed over the decision and "env_steps";
//    the KL term to a frozen prior is computed inside Update and reported as a scalar;
//  - PARROT's policy outputs a flow latent (the published architecture says so);
//  - MCAT trains context models and a translator beside its TD3 from extra columns
//    ("task_index") and a second, learner-side table (more than one TableSpec);
//  - prior-training jobs read a dataset instead of replay: the same Batch of named columns,
//    with no keys and no table.
//
// Thread-compatible: the loop calls one Algorithm from one thread.
#ifndef PRL_LEARNER_ALGORITHM_H_
#define PRL_LEARNER_ALGORITHM_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/tensor.h"
#include "proto/actor.pb.h"
#include "proto/experiment.pb.h"
#include "proto/replay.pb.h"

namespace prl::learner {

// B rows of named columns, on the algorithm's device.
struct Batch {
  // Column name -> [B, ...] tensor (names as in prl.v1.Assignment.signature).
  std::map<std::string, at::Tensor> columns;
  // [B] importance weights of a prioritized sample, or undefined for uniform sampling.
  at::Tensor weight;
  // Replay keys of the rows (for priority updates); empty for dataset batches.
  std::vector<uint64_t> keys;
  // Items the source held when the batch was drawn.
  int64_t source_size = 0;
  // Batches of the further tables whose TableSpec says `sampled`, in Tables() order, drawn with
  // this one; a batch without columns where that table had nothing to sample yet.
  std::vector<Batch> extra;
};

// What one Update did.
struct UpdateResult {
  // Named scalars for progress, metrics and the curve: "critic_loss", "actor_loss", "alpha",
  // "alpha_loss", "q_mean", "entropy"; latent agents add "kl_to_prior".
  std::map<std::string, double> scalars;
  // New priorities for batch.keys (same order), or empty for none.
  std::vector<double> priorities;
  // New priorities for the keys of batch.extra[i] (same order), or empty for none.
  std::vector<std::vector<double>> extra_priorities;
};

// A replay table the run creates on every shard. The first is the one actors insert into.
struct TableSpec {
  // Appended to the experiment id to name the table ("" for the actors' table).
  std::string suffix;
  // Columns in the table's order.
  std::vector<v1::ColumnSpec> signature;
  // A further table (not the first) the feed samples with every batch (Batch::extra), e.g.
  // MCAT's self-imitation buffer. The first table is always sampled.
  bool sampled = false;
  // Actors insert every finished training episode here again, each row with its discounted
  // return (Assignment.episode_table; the algorithm sets episode_discount in DescribeActing).
  bool episode_returns = false;
  // Overrides of the spec's replay settings for this table (0 / UNSPECIFIED: the spec's).
  int64_t capacity = 0;
  v1::Sampler sampler = v1::SAMPLER_UNSPECIFIED;
  v1::Remover remover = v1::REMOVER_UNSPECIFIED;
  double priority_exponent = 0;
  double importance_sampling_exponent = 0;
  // False: the spec's rate limiting (min_size_to_sample, samples_per_insert) does not apply; a
  // table sampled only alongside the first (`sampled`) must not hold back actors' inserts.
  bool rate_limited = true;
};

// The most updates one CUDA graph launch holds (AlgorithmOptions::updates_per_graph).
inline constexpr int kMaxUpdatesPerGraph = 16;

// What an algorithm is built from.
struct AlgorithmOptions {
  // The experiment's spec, filled and validated (every default resolved).
  v1::ExperimentSpec spec;
  // Dimensions of the env the spec names.
  int obs_dim = 0;
  int act_dim = 0;
  // "auto", "cpu", "cuda", "cuda:N".
  std::string device = "auto";
  // LibTorch intra-op threads for updates (0 leaves LibTorch's setting).
  int num_threads = 0;
  // On a GPU with CUDA graphs: updates per graph launch when UpdateMany gets several batches
  // (AgentOptions::updates_per_graph, 1 to kMaxUpdatesPerGraph).
  int updates_per_graph = 1;
  // The experiment the algorithm trains for ("" when it is built only to load a policy).
  std::string experiment_id;
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;

  // The method's name as specs spell it: "sac", "td3", "spirl", ...
  virtual std::string name() const = 0;

  // The replay tables to create (at least one; the first is the actors').
  virtual std::vector<TableSpec> Tables() const = 0;

  // Fills the algorithm's part of the actors' assignment: signature of the actors' table,
  // decision horizon, policy architecture, prior reference, tasks. The loop fills the rest
  // (mode, env, replay addresses, table name, warm-up, evaluation).
  virtual void DescribeActing(v1::Assignment* assignment) const = 0;

  // One gradient step on `batch`. Errors: INVALID_ARGUMENT naming a missing or mis-shaped
  // column; INTERNAL for a LibTorch failure. The run fails on an error.
  virtual absl::StatusOr<UpdateResult> Update(const Batch& batch) = 0;

  // One gradient step per batch, in order: the same steps and results as that many Update
  // calls. The loop hands over several batches when the feed already holds them
  // (TrainingRunOptions::updates_per_call); an algorithm on a GPU queues the steps back to back
  // (Agent::UpdateMany) so the device does not idle while the host waits for each step's
  // results. Errors as Update, naming the batch ("batches[2]: ..."); the steps before a
  // failing one may have been applied (the run fails on an error). The default calls Update
  // per batch.
  virtual absl::StatusOr<std::vector<UpdateResult>> UpdateMany(absl::Span<const Batch> batches) {
    std::vector<UpdateResult> results;
    results.reserve(batches.size());
    for (size_t i = 0; i < batches.size(); ++i) {
      absl::StatusOr<UpdateResult> result = Update(batches[i]);
      if (!result.ok()) {
        return absl::Status(result.status().code(),
                            absl::StrCat("batches[", i, "]: ", result.status().message()));
      }
      results.push_back(*std::move(result));
    }
    return results;
  }

  // The policy actors act with (prl.v1.Policy's architecture and weights, CPU float32).
  virtual absl::Status ExportPolicy(
      v1::PolicyArchitecture* architecture,
      std::vector<std::pair<std::string, HostTensor>>* weights) const = 0;

  // The whole training state as bytes; RestoreState(SaveState()) continues identically.
  // Restore errors: DATA_LOSS for bytes that are not this algorithm's state, INVALID_ARGUMENT
  // for a state of another shape; nothing changes on error.
  virtual absl::StatusOr<std::string> SaveState() const = 0;
  virtual absl::Status RestoreState(const std::string& bytes) = 0;
  // Starts a new run from what another run of the same algorithm learned (SaveState bytes of
  // its checkpoint; AlgorithmSpec.init_from): its networks and temperature, with this run's
  // fresh optimisers, counters and random streams. Errors as RestoreState; UNIMPLEMENTED for
  // an algorithm that cannot.
  virtual absl::Status InitializeFrom(const std::string& bytes) {
    (void)bytes;
    return absl::UnimplementedError(
        absl::StrCat(name(), " cannot start from another experiment's state"));
  }

  // Finished episodes the actors reported (training and evaluation), in arrival order. MCAT
  // chooses its transfer plan from them; the others ignore them.
  virtual void ObserveEpisodes(const std::vector<v1::EpisodeSummary>& episodes) { (void)episodes; }
  // MCAT: the transfer plan to publish with the next policy version (prl.v1.Policy.transfer).
  // False when the algorithm has none.
  virtual bool ExportTransfer(v1::TransferPlan* plan) const {
    (void)plan;
    return false;
  }

  // Called once when the run ends for good (succeeded, or stopped by a user), after its final
  // checkpoint: the algorithm stores what outlives the run (MCAT: its action translator, a new
  // version in the model store). A failure is logged; the run's outcome stands.
  virtual absl::Status Finish() { return absl::OkStatus(); }

  // Gradient updates done (restored with the state).
  virtual int64_t updates() const = 0;
  // The device batches must be on: "cpu", "cuda:0", ...
  virtual std::string device() const = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_ALGORITHM_H_
