// The learner's training algorithms as a LibTorch core: an Agent owns the networks, target
// networks and optimizers of one algorithm (SAC or TD3 here) and turns batches of transitions
// into gradient updates. No gRPC, replay or threading: the experiment runner feeds it batches,
// publishes ExportPolicy() to actors and checkpoints SaveState(). docs/learner.md describes the
// losses, defaults, checkpoint contents and the policy export format.
//
// Thread-compatible: one thread drives an Agent (Update, Act, SaveState, RestoreState); const
// methods may run concurrently with each other. LibTorch errors (c10::Error) become absl::Status
// inside; no exception leaves an Agent.
#ifndef PRL_LEARNER_AGENT_H_
#define PRL_LEARNER_AGENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tensor.h"
#include "learner/algorithm.h"
#include "proto/actor.pb.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// A batch of B transitions: float32 tensors on any device (moved to the agent's device).
struct TransitionBatch {
  at::Tensor obs;       // [B, obs_dim]
  at::Tensor action;    // [B, act_dim], in [-1, 1]
  at::Tensor reward;    // [B]
  at::Tensor next_obs;  // [B, obs_dim]
  at::Tensor discount;  // [B]: 0 where the episode terminated, 1 otherwise (truncation keeps 1)
  at::Tensor weight;    // [B] importance weights, or undefined for uniform

  // Optional self-imitation rows (MCAT; Oh et al. 2018 in the lower-bound Q-learning form of
  // Tang 2020; mcat uses it with TD3): S rows of a separate buffer with their observed returns.
  // The critic loss then adds
  //   self_imitation_weight · ½ Σ_k mean_i w_i ((R_i - Q_k(s_i, a_i))_+)²
  // which lifts Q towards returns the agent has actually earned and never pulls it down.
  // Undefined sil_obs means no self-imitation term.
  at::Tensor sil_obs;     // [S, obs_dim]
  at::Tensor sil_action;  // [S, act_dim]
  at::Tensor sil_return;  // [S]
  at::Tensor sil_weight;  // [S] importance weights, or undefined
  double self_imitation_weight = 0;
};

// What one Update did.
struct UpdateStats {
  double critic_loss = 0;  // 0.5 · Σ_k mean_i w_i (Q_k(s_i, a_i) - y_i)²
  double actor_loss = 0;   // 0 when !actor_updated
  double alpha = 0;        // SAC: temperature used by this update; TD3: 0
  double alpha_loss = 0;   // SAC with automatic temperature; 0 otherwise
  double q_mean = 0;       // mean of Q_k(s_i, a_i) over critics and batch
  double entropy = 0;      // SAC: -mean log π(a|s) of the policy's samples; TD3: 0
  bool actor_updated = false;
  std::vector<float> td_error_abs;  // per item: mean_k |Q_k(s_i, a_i) - y_i|, for priorities
  // With self-imitation rows: the term's value and, per row, (R_i - min_k Q_k(s_i, a_i))_+
  // (the self-imitation buffer's priorities).
  double sil_loss = 0;
  std::vector<float> sil_advantage;
};

struct AgentOptions {
  int obs_dim = 0;
  int act_dim = 0;
  // sac or td3 set; zero fields mean the proto's documented defaults (Create resolves them).
  v1::AlgorithmSpec algorithm;
  // "auto" (CUDA when available, CPU otherwise; "" means the same), "cpu", "cuda", "cuda:N".
  std::string device = "auto";
  // Seeds initialisation and every random draw: CPU runs with the same seed, options and
  // batches are identical.
  uint64_t seed = 0;
  // LibTorch intra-op threads used by Update; 0 leaves LibTorch's setting.
  int num_threads = 0;
  // CPU linear layers use oneDNN's sgemm when the process can load it (models/gemm.h); false
  // keeps ATen's matmul (the system BLAS).
  bool fast_cpu_gemm = true;
  // On a CUDA device (with a CUDA build), each kind of update (batch size, weights or not, the
  // algorithm's branch of the moment: TD3's delayed actor step, the target update) runs eagerly
  // a few times and is then captured as a CUDA graph and replayed (learner/cuda_graph.h): one
  // launch instead of hundreds. Results match the eager update to float rounding. Updates with
  // self-imitation rows, and algorithms not listed in docs/learner.md as captured, stay eager.
  // false: every update eager.
  bool cuda_graphs = true;
  // With cuda_graphs: UpdateMany runs each group of this many consecutive batches of one kind
  // (same size, weights or not) as one graph launch, once every update of the group has its own
  // graph; a group's graph is captured for its sequence of branches. The same updates and results
  // as one graph per update; fewer launches, copies and host round trips. 1: one graph per update
  // (the default until a GPU run shows the gain; bench/learner_gpu.sh measures both). 1 to
  // kMaxUpdatesPerGraph.
  int updates_per_graph = 1;
  // On the CPU, SAC's and TD3's updates compute their networks' forward and backward passes
  // without autograd, one batch row range per intra-op thread (learner/direct_sac.h,
  // learner/direct_td3.h): the same values up to float rounding. Applies to flat SAC (and
  // PARROT's SAC over a latent) without self-imitation rows and to TD3 (with them too: MCAT),
  // with ReLU networks without LayerNorm and oneDNN's sgemm; false: always LibTorch's autograd.
  bool direct_cpu_update = true;
};

class Agent {
 public:
  // Validates `options`, resolves the algorithm's defaults and builds a freshly initialised
  // agent. Errors: INVALID_ARGUMENT naming the field, its value and what is allowed
  // ("algorithm.discount: 1.5 is not allowed; it must be in (0, 1]"); UNIMPLEMENTED for spirl,
  // eap, parrot and mcat; FAILED_PRECONDITION for a CUDA device on a machine without one.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(const AgentOptions& options);
  virtual ~Agent();

  // One gradient step: critics; actor and temperature as the algorithm says; Polyak averaging
  // of the target networks every target_update_period updates (TD3: actor updates).
  // Errors: INVALID_ARGUMENT naming a batch field with a wrong dtype or shape; INTERNAL for a
  // LibTorch failure.
  virtual absl::StatusOr<UpdateStats> Update(const TransitionBatch& batch) = 0;

  // Update on each batch in turn, the same updates and statistics as that many Update calls. On
  // a GPU with CUDA graphs the updates are queued back to back and their statistics come to the
  // host together at the end, so the host does not wait for each update before staging the next
  // (the GPU then runs without gaps). Every batch is checked before the first update: an
  // INVALID_ARGUMENT names the batch ("batches[2]: batch.obs: ...") and nothing changed.
  // Errors: as Update; after an INTERNAL error some of the updates may have been applied
  // (updates() tells how many).
  virtual absl::StatusOr<std::vector<UpdateStats>> UpdateMany(
      absl::Span<const TransitionBatch> batches) = 0;

  // Actions for `obs` [n, obs_dim] into `action` [n, act_dim] on obs's device, without
  // gradients: the policy's mean action when `deterministic`, otherwise a sample (SAC) or the
  // mean plus clipped exploration noise (TD3), from the agent's acting random stream. For
  // evaluation and tests; CHECK-fails on a wrong shape.
  virtual void Act(const at::Tensor& obs, bool deterministic, at::Tensor* action) = 0;

  // The policy as actors get it: its architecture and its weights by name (CPU float32), as in
  // prl.v1.Policy. Errors: INTERNAL for a LibTorch failure.
  virtual absl::Status ExportPolicy(
      v1::PolicyArchitecture* architecture,
      std::vector<std::pair<std::string, HostTensor>>* weights) const = 0;

  // The full training state (networks, target networks, Adam moments and step counts, log α,
  // update counters, random streams) as bytes for a checksummed file. RestoreState(SaveState())
  // continues bit-identically on CPU.
  virtual absl::StatusOr<std::string> SaveState() const = 0;
  // Replaces the training state with one written by SaveState of an agent with the same
  // algorithm, dimensions and network; learning rates and other hyperparameters stay this
  // agent's. Nothing changes on error. Errors: DATA_LOSS for bytes that are not a whole agent
  // checkpoint; INVALID_ARGUMENT for a checkpoint of another algorithm, shape or network (the
  // message says which).
  virtual absl::Status RestoreState(const std::string& bytes) = 0;
  // Starts from what another agent learned (fine-tuning): takes the policy, the critics, the
  // target networks and SAC's temperature from SaveState bytes of an agent with the same
  // algorithm, dimensions and network; the Adam moments, update counters and random streams
  // stay this agent's (fresh ones, for a new run). Errors and atomicity as RestoreState.
  virtual absl::Status InitializeFrom(const std::string& bytes) = 0;

  // Updates done so far (restored with the state).
  virtual int64_t updates() const = 0;
  // The device the agent computes on: "cpu", "cuda:0", ...
  virtual std::string device() const = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_AGENT_H_
