// Internals of learner/agent: option resolution, the machinery SAC and TD3 share (twin critics,
// Adam, Polyak averaging, checkpoints, policy export) and the two algorithms. Only agent.cc,
// agent_checkpoint.cc, sac_agent.cc, td3_agent.cc and tests include this header.
#ifndef PRL_LEARNER_AGENT_INTERNAL_H_
#define PRL_LEARNER_AGENT_INTERNAL_H_

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ATen/core/Generator.h"
#include "ATen/core/Tensor.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "learner/agent.h"
#include "learner/cuda_graph.h"
#include "learner/flat_adam.h"
#include "models/networks.h"
#include "proto/experiment.pb.h"

namespace prl::learner::internal {

// AgentOptions after validation, with every default resolved.
struct AgentConfig {
  int64_t obs_dim = 0;
  int64_t act_dim = 0;
  v1::AlgorithmSpec algorithm;  // defaults filled (docs/learner.md lists them)
  // The policy's network: algorithm.network, unless the algorithm gives the policy its own
  // (spirl's policy copies the skill prior's architecture).
  v1::NetworkSpec actor_network;
  at::Device device = at::kCPU;
  uint64_t seed = 0;
  int num_threads = 0;
  models::GemmBackend gemm = models::GemmBackend::kOneDnn;
  bool cuda_graphs = true;
  int updates_per_graph = 1;
  bool direct_cpu_update = true;
};

// The message of a LibTorch (or other) exception, without c10's backtrace.
std::string ErrorText(const std::exception& e);

// Checks `options` and fills the algorithm's defaults. Errors: as Agent::Create.
absl::StatusOr<AgentConfig> ResolveAgentOptions(const AgentOptions& options);

// A TransitionBatch checked and moved to the agent's device.
struct DeviceBatch {
  int64_t size = 0;
  at::Tensor obs, action, reward, next_obs, discount, weight;
  // Self-imitation rows (TransitionBatch's sil_*); sil_obs undefined when there are none.
  at::Tensor sil_obs, sil_action, sil_return, sil_weight;
  double sil_coef = 0;
};

// One piece of training state in a checkpoint.
struct StateEntry {
  std::string name;
  at::Tensor tensor;                   // float32, restored in place
  int64_t* counter = nullptr;          // or an int64 counter
  at::Generator* generator = nullptr;  // or a random stream
  // A learned quantity (network weights, target networks, SAC's temperature) that
  // InitializeFrom takes from another agent; optimiser moments, counters and random streams
  // are not.
  bool learned = false;
};

// What SAC and TD3 share: a policy, twin critics with targets, their Adam optimizers, random
// streams, the update counter, checkpoints and policy export. Subclasses implement DoUpdate.
class TwinCriticAgent : public Agent {
 public:
  TwinCriticAgent(const AgentConfig& config, models::PolicyNetwork::Head head);
  ~TwinCriticAgent() override;

  absl::StatusOr<UpdateStats> Update(const TransitionBatch& batch) final;
  absl::StatusOr<std::vector<UpdateStats>> UpdateMany(
      absl::Span<const TransitionBatch> batches) final;
  void Act(const at::Tensor& obs, bool deterministic, at::Tensor* action) final;
  absl::Status ExportPolicy(v1::PolicyArchitecture* architecture,
                            std::vector<std::pair<std::string, HostTensor>>* weights) const final;
  absl::StatusOr<std::string> SaveState() const final;
  absl::Status RestoreState(const std::string& bytes) final;
  absl::Status InitializeFrom(const std::string& bytes) final;
  int64_t updates() const final { return updates_; }
  std::string device() const final { return config_.device.str(); }

  // For tests: Update with the standard-normal draws given ([NoiseDraws(), B, act_dim]) instead
  // of drawn from the agent's stream.
  absl::StatusOr<UpdateStats> UpdateWithNoise(const TransitionBatch& batch,
                                              const at::Tensor& noise);
  models::PolicyNetwork& actor() { return *actor_; }
  models::QEnsemble& critic() { return *critic_; }
  models::QEnsemble& critic_target() { return *critic_target_; }
  // The target copies of the actor (TD3) or nullptr.
  virtual models::PolicyNetwork* actor_target() { return nullptr; }
  // Whether updates take the direct CPU path (AgentOptions::direct_cpu_update where it applies).
  virtual bool direct_update() const { return false; }
  // For tests: the graphs captured for groups of updates (AgentOptions::updates_per_graph) and
  // how many times UpdateMany replayed one.
  size_t group_graphs() const;
  int64_t group_replays() const { return group_replays_; }
  // For tests: the copies replays have queued to fill their graphs' inputs (one per batch that
  // lies in one block as the graph's first did, one per field otherwise).
  int64_t graph_input_copies() const { return input_copies_; }

 protected:
  // One update; `noise` holds NoiseDraws() standard-normal [B, act_dim] draws on the device.
  virtual UpdateStats DoUpdate(const DeviceBatch& batch, const at::Tensor& noise) = 0;
  virtual int64_t NoiseDraws() const = 0;
  // Actions for obs on the device, without gradients; `noise` is standard normal [n, act_dim].
  virtual at::Tensor Policy(const at::Tensor& obs, bool deterministic,
                            const at::Tensor& noise) const = 0;
  // Fills the head-specific fields of the exported architecture.
  virtual void DescribePolicy(v1::PolicyArchitecture* architecture) const = 0;
  // Every piece of state; subclasses append theirs to the base's.
  virtual std::vector<StateEntry> StateEntries();
  // Every optimiser DoUpdate may step; subclasses append theirs to the base's.
  virtual std::vector<FlatAdam*> Optimizers();

  // CUDA graphs (AgentOptions::cuda_graphs). An algorithm whose DoUpdate may be captured says
  // so: its kernels then depend on host state only through GraphBranch(), it steps its
  // optimisers through FlatAdam::Step and returns its statistics through FetchStats, and its
  // only host-side effects are increments of StateEntries() counters; each optimiser steps at
  // most once per update (a replay gives it one step count).
  virtual bool GraphSafe() const { return false; }
  // Which branch the next DoUpdate takes where it depends on the counters (TD3's delayed actor
  // step, the period of the target update): updates of different branches get different graphs.
  virtual int64_t GraphBranch() const { return 0; }

  // Critic loss, backward, clipping and Adam step against `target` [B] (no gradient).
  struct CriticStepResult {
    at::Tensor loss, td_error_abs, q_mean;
    // With self-imitation rows: the term (a scalar) and (R - min_k Q_k)_+ per row; undefined
    // otherwise.
    at::Tensor sil_loss, sil_advantage;
  };
  CriticStepResult CriticStep(const DeviceBatch& batch, const at::Tensor& target);
  // Backward of `loss` into `params`' flat gradient, clipping, Adam step.
  void GradientStep(const at::Tensor& loss, models::ParameterBlock& params, FlatAdam& adam);
  // target ← (1 - τ)·target + τ·online.
  void Polyak(const models::ParameterBlock& online, models::ParameterBlock& target) const;
  // Copies the scalars (one device-to-host transfer) into stats. While an update is being
  // captured, keeps them on the device for the replays to copy instead.
  void FetchStats(const std::vector<at::Tensor>& scalars, const at::Tensor& td_error_abs,
                  UpdateStats* stats);
  // The scalars and per-item errors FetchStats packed ([numel] floats), from a host copy: bit i
  // of `defined` set where scalar i was packed (the others read 0).
  static constexpr size_t kPackedScalars = 6;
  static void UnpackStats(const float* packed, int64_t numel, uint32_t defined, UpdateStats* stats);
  // r·reward_scale + γ·discount·(min_k next_q[k] − α·R) for the target critics' values next_q
  // [K, B] (α [] and R [B] undefined: no such term); one kernel on a GPU (models::TwinTdTarget).
  at::Tensor TdTarget(const DeviceBatch& batch, const at::Tensor& next_q,
                      const at::Tensor& alpha = at::Tensor(),
                      const at::Tensor& regularizer = at::Tensor()) const;

  const AgentConfig config_;
  at::Generator train_generator_;
  at::Generator act_generator_;
  std::unique_ptr<models::PolicyNetwork> actor_;
  std::unique_ptr<FlatAdam> actor_adam_;
  std::unique_ptr<models::QEnsemble> critic_;
  std::unique_ptr<models::QEnsemble> critic_target_;
  std::unique_ptr<FlatAdam> critic_adam_;
  int64_t updates_ = 0;

 private:
  struct GraphEntry;
  // A captured graph's kind: batch size, weighted or not, and the GraphBranch() of each update
  // it holds (one for an update's own graph, AgentConfig::updates_per_graph for a group's).
  using GraphKey = std::tuple<int64_t, bool, std::vector<int64_t>>;
  absl::StatusOr<UpdateStats> RunUpdate(const TransitionBatch& batch, const at::Tensor* noise);
  // The update through a CUDA graph for its kind (eagerly on the graph stream until the kind
  // has run kEagerUpdatesBeforeCapture times); `draws` are the noise draws on the CPU.
  UpdateStats GraphUpdate(const DeviceBatch& batch, const at::Tensor& draws);
  // The graph that runs `batches` (UpdateMany's next group) in one launch, captured first if
  // need be; nullptr where the group cannot run as one (batches of different kinds, an update
  // whose own graph is not captured yet, a failed capture): its updates then run one by one.
  // `idle` is called before a capture, which wants an idle stream.
  GraphEntry* GroupGraph(absl::Span<const DeviceBatch> batches, const std::function<void()>& idle);
  // The branches of the next `n` updates of a kind, from what each update's own graph adds to
  // the counters; false when one of those graphs is not captured yet.
  bool PlanBranches(int64_t size, bool weighted, size_t n, std::vector<int64_t>* branches);
  // Queues a replay of `entry`'s graph for `batches` (one per update it holds) on the graph
  // stream (call inside its Run): the inputs' copies, the replay and the statistics' copy into
  // the pinned host tensor returned, valid once the stream is synchronised. Advances the host
  // counters as the updates will.
  at::Tensor EnqueueReplay(absl::Span<const DeviceBatch> batches,
                           absl::Span<const at::Tensor> draws, GraphEntry& entry);
  // The statistics of each update of a replay of `entry` into out[0..], from its host copy.
  static void UnpackReplay(const GraphEntry& entry, const at::Tensor& host, UpdateStats* out);
  // Captures `entry`'s updates, one per batch in `batches` (with static copies of their tensors)
  // taking `branches`, each with noise of `noise_shape`; nothing runs. Errors: the capture's, or
  // INTERNAL when an update takes another branch than planned.
  absl::Status CaptureUpdates(absl::Span<const DeviceBatch> batches, at::IntArrayRef noise_shape,
                              absl::Span<const int64_t> branches, GraphEntry& entry);
  // The kinds in graphs_ (captured, being warmed up, or failed) of single updates (false) or of
  // groups (true).
  size_t CountKinds(bool groups) const;
  // Every StateEntries() counter (gathered on first use).
  const std::vector<int64_t*>& Counters();
  // RestoreState, or with `learned_only` InitializeFrom.
  absl::Status Restore(const std::string& bytes, bool learned_only);

  std::unique_ptr<GraphStream> graph_stream_;  // null: every update eager
  std::map<GraphKey, std::unique_ptr<GraphEntry>> graphs_;
  GraphEntry* capturing_ = nullptr;  // the entry being captured, if any
  std::vector<int64_t*> counters_;
  int64_t group_replays_ = 0;
  int64_t input_copies_ = 0;
};

// SPiRL's divergence is clipped to ±this (SPiRL's max_divergence_range).
inline constexpr double kSpirlMaxDivergence = 100.0;

// Which R(s) a RegularizedSacAgent uses, as far as its direct CPU update must know it.
enum class SacRegularizer {
  kLogProb,   // log π(z|s): SAC and PARROT's default
  kKlToBase,  // log π(z|s) − log N(z; 0, I): PARROT's REGULARIZER_KL_TO_BASE
  kPriorKl,   // the analytic, clipped KL of π's Gaussian to p(z|s): SPiRL and EAP (the agent
              // overrides PriorAtBatch)
};

// The prior's Gaussian p(z|s) at a batch's s and s', [B, A] each (for SacRegularizer::kPriorKl).
struct PriorRows {
  at::Tensor mean, log_std, next_mean, next_log_std;
};

class DirectSacUpdate;

// SAC's update with a per-sample regulariser R(s) in the entropy's slot and the temperature α
// tuned from R's batch mean: SAC and PARROT use R = log π(z|s) (maximum entropy, α towards a
// target entropy), SPiRL and EAP R = D(π(·|s) ‖ p(·|s)) (α towards a target divergence δ). In
// the update order of stable-baselines3: one policy sample on s serves the temperature and
// actor losses; the critics regress on y = r·scale + γ·d·(min_k Q'_k(s', z') − α·R(s')); the
// actor then minimises mean(α·R(s) − min_k Q_k(s, z)) through the updated critics. The policy's
// output is z = b·tanh(u / s) with u ~ N(μ, σ) from the network.
class RegularizedSacAgent : public TwinCriticAgent {
 public:
  struct Options {
    double initial_alpha = 1.0;
    double alpha_lr = 3e-4;
    bool fixed_alpha = false;
    double bound = 1.0;  // b
    double scale = 1.0;  // s
  };
  RegularizedSacAgent(const AgentConfig& config, const Options& options);
  ~RegularizedSacAgent() override;

  bool direct_update() const final { return direct_ != nullptr; }

 protected:
  UpdateStats DoUpdate(const DeviceBatch& batch, const at::Tensor& noise) final;
  at::Tensor Policy(const at::Tensor& obs, bool deterministic, const at::Tensor& noise) const final;
  std::vector<StateEntry> StateEntries() override;
  std::vector<FlatAdam*> Optimizers() override;
  int64_t GraphBranch() const override;  // whether the target networks are updated

  // R [B] at `obs` for the policy's Gaussian `out` (of u / s) and its reparameterised sample
  // `sample` (tanh of u / s, with log_prob); `next_state` tells the target's R(s') (no
  // gradient) from the actor's R(s). `noise` is the update's draws (DoUpdate uses draws 0 and 1
  // for the two samples; a subclass may use the rest).
  virtual at::Tensor Regularizer(const models::PolicyNetwork::Output& out,
                                 const models::SquashedSample& sample, const at::Tensor& obs,
                                 const at::Tensor& noise, bool next_state) const = 0;
  // One step of log α (alpha_adam_) from the batch mean of R (no gradient) and α; returns α's
  // loss for the stats. Not called with a fixed α.
  virtual at::Tensor TemperatureStep(const at::Tensor& alpha,
                                     const at::Tensor& mean_regularizer) = 0;
  // What UpdateStats.entropy reports for R's batch mean.
  virtual at::Tensor ReportedEntropy(const at::Tensor& mean_regularizer) const = 0;
  // The autograd update's temperature step from R [B] (its gradient ignored) and α, with what
  // the stats report: α's loss (undefined with a fixed α) and the entropy. The default takes R's
  // mean and calls TemperatureStep and ReportedEntropy; SAC's runs as one kernel on a GPU.
  struct TemperatureResult {
    at::Tensor loss, entropy;
  };
  virtual TemperatureResult Temperature(const at::Tensor& alpha, const at::Tensor& regularizer);
  // Updates from now on take the direct CPU update (learner/direct_sac.h) for `regularizer`,
  // where it applies (config.direct_cpu_update, the CPU, oneDNN, ReLU MLPs); else DoUpdate's
  // autograd path stays. Call from the subclass's constructor.
  void EnableDirectUpdate(SacRegularizer regularizer);
  // p(z|s) at the batch's s and s' for the direct update's kPriorKl, which an agent enabling it
  // must override (the default's empty rows fail the update).
  virtual PriorRows PriorAtBatch(const DeviceBatch& /*batch*/) const { return {}; }
  bool fixed_alpha() const { return fixed_alpha_; }

  double bound() const { return bound_; }
  double scale() const { return scale_; }

  at::Tensor log_alpha_;  // [1]; its gradient is computed in closed form
  FlatAdam alpha_adam_;

 private:
  // The Gaussian of u / s, whose tanh times b is the output.
  models::PolicyNetwork::Output Scaled(models::PolicyNetwork::Output out) const;
  // b·tanh(u / s) from tanh(u / s).
  at::Tensor Bounded(const at::Tensor& squashed) const;
  // The whole update through direct_, filling `stats`; false when it does not apply (no direct_,
  // self-imitation rows, noise off the CPU) and DoUpdate's own path runs.
  bool DirectUpdate(const DeviceBatch& batch, const at::Tensor& noise, UpdateStats* stats);

  const bool fixed_alpha_;
  const double bound_;
  const double scale_;
  std::unique_ptr<DirectSacUpdate> direct_;  // null: the autograd update
};

std::unique_ptr<TwinCriticAgent> NewSacAgent(const AgentConfig& config);
std::unique_ptr<TwinCriticAgent> NewTd3Agent(const AgentConfig& config);

}  // namespace prl::learner::internal

#endif  // PRL_LEARNER_AGENT_INTERNAL_H_
