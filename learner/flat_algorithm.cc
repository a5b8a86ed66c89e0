#include "learner/flat_algorithm.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "learner/agent.h"

namespace prl::learner {
namespace {

v1::ColumnSpec FloatColumn(const std::string& name, int64_t dim) {
  v1::ColumnSpec c;
  c.set_name(name);
  c.set_dtype(v1::Tensor::DTYPE_FLOAT32);
  if (dim > 0) c.add_shape(dim);
  return c;
}

absl::StatusOr<at::Tensor> Column(const Batch& batch, const char* name) {
  auto it = batch.columns.find(name);
  if (it == batch.columns.end() || !it->second.defined()) {
    return absl::InvalidArgumentError(absl::StrCat("batch has no '", name, "' column"));
  }
  return it->second;
}

class AgentAlgorithm final : public Algorithm {
 public:
  AgentAlgorithm(AgentAlgorithmSpec spec, std::unique_ptr<Agent> agent)
      : spec_(std::move(spec)), agent_(std::move(agent)) {}

  std::string name() const override { return spec_.name; }

  std::vector<TableSpec> Tables() const override {
    TableSpec table;
    table.signature = {FloatColumn("observation", spec_.obs_dim),
                       FloatColumn("action", spec_.action_dim), FloatColumn("reward", 0),
                       FloatColumn("discount", 0), FloatColumn("next_observation", spec_.obs_dim)};
    if (spec_.env_steps_column) {
      v1::ColumnSpec steps;
      steps.set_name("env_steps");
      steps.set_dtype(v1::Tensor::DTYPE_INT64);
      table.signature.push_back(steps);
    }
    return {table};
  }

  void DescribeActing(v1::Assignment* assignment) const override {
    assignment->clear_signature();
    const std::vector<TableSpec> tables = Tables();
    for (const v1::ColumnSpec& c : tables.front().signature) *assignment->add_signature() = c;
    assignment->set_decision_horizon(spec_.decision_horizon);
    if (!spec_.prior.name().empty()) {
      *assignment->mutable_prior() = spec_.prior;
      assignment->set_prior_address(spec_.prior_address);
    }
  }

  absl::StatusOr<UpdateResult> Update(const Batch& batch) override {
    PRL_ASSIGN_OR_RETURN(TransitionBatch b, Transitions(batch));
    PRL_ASSIGN_OR_RETURN(UpdateStats stats, agent_->Update(b));
    return Result(stats, batch);
  }

  // Every batch is checked before the first step; the agent queues the steps on a GPU.
  absl::StatusOr<std::vector<UpdateResult>> UpdateMany(absl::Span<const Batch> batches) override {
    std::vector<TransitionBatch> transitions;
    transitions.reserve(batches.size());
    for (size_t i = 0; i < batches.size(); ++i) {
      absl::StatusOr<TransitionBatch> b = Transitions(batches[i]);
      if (!b.ok()) {
        return absl::Status(b.status().code(),
                            absl::StrCat("batches[", i, "]: ", b.status().message()));
      }
      transitions.push_back(*std::move(b));
    }
    PRL_ASSIGN_OR_RETURN(std::vector<UpdateStats> stats, agent_->UpdateMany(transitions));
    std::vector<UpdateResult> results;
    results.reserve(stats.size());
    for (size_t i = 0; i < stats.size(); ++i) results.push_back(Result(stats[i], batches[i]));
    return results;
  }

  absl::Status ExportPolicy(
      v1::PolicyArchitecture* architecture,
      std::vector<std::pair<std::string, HostTensor>>* weights) const override {
    PRL_RETURN_IF_ERROR(agent_->ExportPolicy(architecture, weights));
    if (spec_.output != v1::PolicyArchitecture::OUTPUT_UNSPECIFIED) {
      architecture->set_output(spec_.output);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> SaveState() const override { return agent_->SaveState(); }
  absl::Status RestoreState(const std::string& bytes) override {
    return agent_->RestoreState(bytes);
  }
  absl::Status InitializeFrom(const std::string& bytes) override {
    return agent_->InitializeFrom(bytes);
  }
  int64_t updates() const override { return agent_->updates(); }
  std::string device() const override { return agent_->device(); }

 private:
  static absl::StatusOr<TransitionBatch> Transitions(const Batch& batch) {
    TransitionBatch b;
    PRL_ASSIGN_OR_RETURN(b.obs, Column(batch, "observation"));
    PRL_ASSIGN_OR_RETURN(b.action, Column(batch, "action"));
    PRL_ASSIGN_OR_RETURN(b.reward, Column(batch, "reward"));
    PRL_ASSIGN_OR_RETURN(b.discount, Column(batch, "discount"));
    PRL_ASSIGN_OR_RETURN(b.next_obs, Column(batch, "next_observation"));
    b.weight = batch.weight;
    return b;
  }

  UpdateResult Result(const UpdateStats& stats, const Batch& batch) const {
    UpdateResult result;
    result.scalars["critic_loss"] = stats.critic_loss;
    result.scalars["q_mean"] = stats.q_mean;
    if (stats.actor_updated) result.scalars["actor_loss"] = stats.actor_loss;
    if (!spec_.alpha_name.empty()) result.scalars[spec_.alpha_name] = stats.alpha;
    if (!spec_.alpha_loss_name.empty()) result.scalars[spec_.alpha_loss_name] = stats.alpha_loss;
    if (!spec_.entropy_name.empty()) result.scalars[spec_.entropy_name] = stats.entropy;
    if (!batch.keys.empty() && stats.td_error_abs.size() == batch.keys.size()) {
      result.priorities.assign(stats.td_error_abs.begin(), stats.td_error_abs.end());
    }
    return result;
  }

  const AgentAlgorithmSpec spec_;
  const std::unique_ptr<Agent> agent_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Algorithm>> CreateFlatAlgorithm(const AlgorithmOptions& options) {
  const v1::AlgorithmSpec& algorithm = options.spec.algorithm();
  if (!algorithm.has_sac() && !algorithm.has_td3()) {
    return absl::InvalidArgumentError("algorithm: the flat algorithms are sac and td3");
  }
  AgentOptions agent_options;
  agent_options.obs_dim = options.obs_dim;
  agent_options.act_dim = options.act_dim;
  agent_options.algorithm = algorithm;
  agent_options.device = options.device;
  agent_options.seed = static_cast<uint64_t>(algorithm.seed());
  agent_options.num_threads = options.num_threads;
  agent_options.updates_per_graph = options.updates_per_graph;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent, Agent::Create(agent_options));
  AgentAlgorithmSpec spec;
  spec.name = algorithm.has_sac() ? "sac" : "td3";
  spec.obs_dim = options.obs_dim;
  spec.action_dim = options.act_dim;
  if (algorithm.has_sac()) {
    spec.alpha_name = "alpha";
    spec.alpha_loss_name = "alpha_loss";
    spec.entropy_name = "entropy";
  }
  return MakeAgentAlgorithm(std::move(spec), std::move(agent));
}

std::unique_ptr<Algorithm> MakeAgentAlgorithm(AgentAlgorithmSpec spec,
                                              std::unique_ptr<Agent> agent) {
  return std::make_unique<AgentAlgorithm>(std::move(spec), std::move(agent));
}

}  // namespace prl::learner
