#include "learner/mcat_algorithm.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/torch_tensor.h"
#include "learner/agent.h"
#include "learner/algorithm_defaults.h"
#include "models/mcat_model.h"

namespace prl::learner {
namespace {

constexpr absl::string_view kStateMagic = "prl-mcat-state-v1\n";

v1::ColumnSpec Column(const std::string& name, std::vector<int64_t> shape,
                      v1::Tensor::DType dtype = v1::Tensor::DTYPE_FLOAT32) {
  v1::ColumnSpec c;
  c.set_name(name);
  c.set_dtype(dtype);
  for (int64_t d : shape) c.add_shape(d);
  return c;
}

absl::StatusOr<at::Tensor> Get(const Batch& batch, const char* name) {
  auto it = batch.columns.find(name);
  if (it == batch.columns.end() || !it->second.defined()) {
    return absl::InvalidArgumentError(absl::StrCat("batch has no '", name, "' column"));
  }
  return it->second;
}

// Appends `part` with its length, so parts can hold any bytes.
void AppendPart(const std::string& part, std::string* out) {
  absl::StrAppend(out, part.size(), "\n", part);
}

bool ReadPart(absl::string_view* in, std::string* part) {
  const size_t newline = in->find('\n');
  uint64_t size = 0;
  if (newline == absl::string_view::npos || !absl::SimpleAtoi(in->substr(0, newline), &size)) {
    return false;
  }
  in->remove_prefix(newline + 1);
  if (size > in->size()) return false;
  *part = std::string(in->substr(0, size));
  in->remove_prefix(size);
  return true;
}

class McatAlgorithm final : public Algorithm {
 public:
  McatAlgorithm(const AlgorithmOptions& options, std::unique_ptr<Agent> agent,
                std::unique_ptr<models::McatModel> model, ModelStore* models)
      : options_(options),
        models_(models),
        mcat_(options.spec.algorithm().mcat()),
        agent_(std::move(agent)),
        model_(std::move(model)),
        num_tasks_(mcat_.train_tasks_size()),
        window_(mcat_.context_history() + mcat_.prediction_horizon()),
        learned_(num_tasks_),
        transferred_(num_tasks_),
        plan_source_(num_tasks_, -1),
        tried_source_(num_tasks_, -1) {}

  std::string name() const override { return "mcat"; }

  std::vector<TableSpec> Tables() const override {
    const int64_t obs = options_.obs_dim, act = options_.act_dim;
    TableSpec main;
    main.signature = {Column("observation", {obs}),
                      Column("action", {act}),
                      Column("reward", {}),
                      Column("discount", {}),
                      Column("next_observation", {obs}),
                      Column("task_index", {}, v1::Tensor::DTYPE_INT64),
                      Column("history_observation", {window_ + 1, obs}),
                      Column("history_action", {window_, act}),
                      Column("history_mask", {window_})};
    std::vector<TableSpec> tables = {main};
    if (!mcat_.disable_self_imitation()) {
      TableSpec sil = main;
      sil.suffix = "_sil";
      sil.signature.push_back(Column("return", {}));
      sil.sampled = true;
      sil.rate_limited = false;  // sampled only alongside the actors' table
      sil.episode_returns = true;
      sil.capacity = mcat_.self_imitation_capacity();
      sil.sampler = v1::SAMPLER_PRIORITIZED;
      sil.remover = v1::REMOVER_LOWEST_PRIORITY;
      sil.priority_exponent = mcat_.self_imitation_priority_exponent();
      sil.importance_sampling_exponent = mcat_.self_imitation_importance_exponent();
      tables.push_back(std::move(sil));
    }
    return tables;
  }

  void DescribeActing(v1::Assignment* assignment) const override {
    assignment->clear_signature();
    const std::vector<TableSpec> tables = Tables();
    for (const v1::ColumnSpec& c : tables.front().signature) *assignment->add_signature() = c;
    assignment->set_decision_horizon(1);
    assignment->clear_tasks();
    for (const v1::DynamicsSpec& task : mcat_.train_tasks()) *assignment->add_tasks() = task;
    // evaluation rounds measure the held-out tasks, when there are any
    assignment->clear_eval_tasks();
    for (const v1::DynamicsSpec& task : mcat_.test_tasks()) *assignment->add_eval_tasks() = task;
    if (!mcat_.disable_self_imitation()) {
      assignment->set_episode_discount(options_.spec.algorithm().discount());
    } else {
      assignment->clear_episode_table();
    }
  }

  absl::StatusOr<UpdateResult> Update(const Batch& batch) override {
    PRL_ASSIGN_OR_RETURN(models::McatWindowBatch window, Window(batch));
    UpdateResult result;
    PRL_ASSIGN_OR_RETURN(auto context_scalars, model_->TrainContext(window));
    result.scalars.insert(context_scalars.begin(), context_scalars.end());
    if (!mcat_.disable_policy_transfer()) {  // without transfer nothing acts with H
      PRL_ASSIGN_OR_RETURN(auto translator_scalars, model_->TrainTranslator(window));
      result.scalars.insert(translator_scalars.begin(), translator_scalars.end());
    }

    // TD3 on [s, z] with C fixed
    const auto [z, next_z] = model_->EncodeRows(window);
    TransitionBatch b;
    PRL_ASSIGN_OR_RETURN(at::Tensor obs, Get(batch, "observation"));
    PRL_ASSIGN_OR_RETURN(at::Tensor next_obs, Get(batch, "next_observation"));
    b.obs = at::cat({obs, z.to(obs.device())}, 1);
    b.next_obs = at::cat({next_obs, next_z.to(obs.device())}, 1);
    PRL_ASSIGN_OR_RETURN(b.action, Get(batch, "action"));
    PRL_ASSIGN_OR_RETURN(b.reward, Get(batch, "reward"));
    PRL_ASSIGN_OR_RETURN(b.discount, Get(batch, "discount"));
    b.weight = batch.weight;
    const Batch* sil = nullptr;
    if (!mcat_.disable_self_imitation() && !batch.extra.empty() &&
        !batch.extra.front().columns.empty()) {
      sil = &batch.extra.front();
      PRL_ASSIGN_OR_RETURN(models::McatWindowBatch sil_window, Window(*sil));
      PRL_ASSIGN_OR_RETURN(at::Tensor sil_obs, Get(*sil, "observation"));
      b.sil_obs = at::cat({sil_obs, model_->EncodeRows(sil_window).first.to(sil_obs.device())}, 1);
      PRL_ASSIGN_OR_RETURN(b.sil_action, Get(*sil, "action"));
      PRL_ASSIGN_OR_RETURN(b.sil_return, Get(*sil, "return"));
      b.sil_weight = sil->weight;
      b.self_imitation_weight = mcat_.self_imitation_weight();
    }
    PRL_ASSIGN_OR_RETURN(UpdateStats stats, agent_->Update(b));
    result.scalars["critic_loss"] = stats.critic_loss;
    result.scalars["q_mean"] = stats.q_mean;
    if (stats.actor_updated) result.scalars["actor_loss"] = stats.actor_loss;
    if (!batch.keys.empty() && stats.td_error_abs.size() == batch.keys.size()) {
      result.priorities.assign(stats.td_error_abs.begin(), stats.td_error_abs.end());
    }
    if (sil != nullptr) {
      result.scalars["self_imitation_loss"] = stats.sil_loss;
      double positive = 0;
      for (float a : stats.sil_advantage) positive += a > 0 ? 1 : 0;
      if (!stats.sil_advantage.empty()) {
        result.scalars["self_imitation_positive_fraction"] =
            positive / static_cast<double>(stats.sil_advantage.size());
      }
      result.extra_priorities.resize(1);
      if (stats.sil_advantage.size() == sil->keys.size()) {
        // (R - Q)_+: rows the critic already values above their return sink, and are the
        // first the table evicts (REMOVER_LOWEST_PRIORITY)
        result.extra_priorities[0].assign(stats.sil_advantage.begin(), stats.sil_advantage.end());
      }
    }
    for (int i = 0; i < num_tasks_; ++i) {
      result.scalars[absl::StrCat("transfer_source_task_", i)] = plan_source_[i];
    }
    return result;
  }

  void ObserveEpisodes(const std::vector<v1::EpisodeSummary>& episodes) override {
    const size_t window = static_cast<size_t>(mcat_.transfer_window_episodes());
    for (const v1::EpisodeSummary& e : episodes) {
      if (e.is_eval() || e.policy_version() == 0) continue;  // warm-up episodes say nothing
      const int task = e.task_index();
      if (task < 0 || task >= num_tasks_) continue;
      std::deque<double>& returns = e.transferred() ? transferred_[task] : learned_[task];
      returns.push_back(e.episode_return());
      while (returns.size() > window) returns.pop_front();
    }
    Replan();
  }

  bool ExportTransfer(v1::TransferPlan* plan) const override {
    plan->Clear();
    const at::Tensor features = model_->task_features().to(at::kCPU, at::kFloat).contiguous();
    absl::StatusOr<HostTensor> host = FromTorch(features);
    if (!host.ok()) return false;
    TensorToProto(std::move(*host), plan->mutable_task_contexts());
    for (int i = 0; i < num_tasks_; ++i) plan->add_source_task(plan_source_[i]);
    return true;
  }

  absl::Status ExportPolicy(
      v1::PolicyArchitecture* architecture,
      std::vector<std::pair<std::string, HostTensor>>* weights) const override {
    PRL_RETURN_IF_ERROR(agent_->ExportPolicy(architecture, weights));
    // the network reads [s, z]; actors see the observation and the context separately
    architecture->set_obs_dim(static_cast<int32_t>(options_.obs_dim));
    architecture->set_context_dim(mcat_.context_dim());
    architecture->set_context_history(mcat_.context_history());
    try {
      for (const auto& [name, tensor] : model_->ActingParameters()) {
        PRL_ASSIGN_OR_RETURN(HostTensor host, FromTorch(tensor));
        weights->emplace_back(name, std::move(host));
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("cannot export the MCAT networks: ", e.what()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> SaveState() const override {
    PRL_ASSIGN_OR_RETURN(std::string agent, agent_->SaveState());
    PRL_ASSIGN_OR_RETURN(std::string model, model_->SaveState());
    std::string out(kStateMagic);
    AppendPart(agent, &out);
    AppendPart(model, &out);
    AppendPart(TransferStats(), &out);
    return out;
  }

  absl::Status RestoreState(const std::string& bytes) override {
    absl::string_view in = bytes;
    std::string agent, model, stats;
    if (!absl::ConsumePrefix(&in, kStateMagic) || !ReadPart(&in, &agent) ||
        !ReadPart(&in, &model) || !ReadPart(&in, &stats) || !in.empty()) {
      return absl::DataLossError("the checkpoint does not hold an mcat state");
    }
    // check everything before changing anything
    std::vector<std::deque<double>> learned, transferred;
    std::vector<int> tried;
    PRL_RETURN_IF_ERROR(ParseTransferStats(stats, &learned, &transferred, &tried));
    const std::string agent_before = agent_->SaveState().value_or("");
    PRL_RETURN_IF_ERROR(agent_->RestoreState(agent));
    if (absl::Status s = model_->RestoreState(model); !s.ok()) {
      if (!agent_before.empty()) agent_->RestoreState(agent_before).IgnoreError();
      return s;
    }
    learned_ = std::move(learned);
    transferred_ = std::move(transferred);
    tried_source_ = std::move(tried);
    Replan();
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (models_ == nullptr || options_.experiment_id.empty() || mcat_.disable_policy_transfer()) {
      return absl::OkStatus();  // nowhere to store it, or no translator was trained
    }
    v1::ModelInfo info;
    info.set_name(absl::AsciiStrToLower(absl::StrCat(options_.experiment_id, "-translator")));
    info.set_training_summary(absl::StrCat("action translator of mcat experiment ",
                                           options_.experiment_id, " after ", agent_->updates(),
                                           " updates, over ", num_tasks_, " training tasks"));
    // a learner killed after storing it and before the experiment's end was recorded runs the
    // end again from the final checkpoint: the same translator is not stored twice
    for (const v1::ModelInfo& stored : models_->List()) {
      if (stored.name() == info.name() && stored.training_summary() == info.training_summary()) {
        PRL_LOG(INFO) << options_.experiment_id << ": its translator is stored already, as "
                      << info.name() << " v" << stored.version();
        return absl::OkStatus();
      }
    }
    PRL_ASSIGN_OR_RETURN(const int64_t version, models_->Reserve(info.name()));
    info.set_version(version);
    PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, model_->TranslatorArtifact(info));
    PRL_ASSIGN_OR_RETURN(const std::string path, models_->Write(artifact));
    PRL_LOG(INFO) << options_.experiment_id << ": stored its translator as " << info.name() << " v"
                  << version << " (" << path << ")";
    return absl::OkStatus();
  }

  int64_t updates() const override { return agent_->updates(); }
  std::string device() const override { return agent_->device(); }

 private:
  absl::StatusOr<models::McatWindowBatch> Window(const Batch& batch) const {
    models::McatWindowBatch w;
    PRL_ASSIGN_OR_RETURN(w.observations, Get(batch, "history_observation"));
    PRL_ASSIGN_OR_RETURN(w.actions, Get(batch, "history_action"));
    PRL_ASSIGN_OR_RETURN(w.mask, Get(batch, "history_mask"));
    PRL_ASSIGN_OR_RETURN(w.task, Get(batch, "task_index"));
    return w;
  }

  void Replan() {
    if (mcat_.disable_policy_transfer() || num_tasks_ < 2) {
      std::fill(plan_source_.begin(), plan_source_.end(), -1);
      return;
    }
    const auto mean = [](const std::deque<double>& v) {
      double sum = 0;
      for (double x : v) sum += x;
      return sum / static_cast<double>(v.size());
    };
    int best = -1;
    double best_return = 0;
    for (int j = 0; j < num_tasks_; ++j) {
      if (learned_[j].empty()) continue;
      const double r = mean(learned_[j]);
      if (best < 0 || r > best_return) {
        best = j;
        best_return = r;
      }
    }
    for (int i = 0; i < num_tasks_; ++i) {
      plan_source_[i] = -1;
      if (best < 0 || i == best || learned_[i].empty()) continue;
      if (tried_source_[i] != best) {
        // a new source: what earlier translations earned says nothing about it
        transferred_[i].clear();
        tried_source_[i] = best;
      }
      const double own = mean(learned_[i]);
      const bool better = transferred_[i].empty() ? best_return > own : mean(transferred_[i]) > own;
      if (better) plan_source_[i] = best;
    }
  }

  // "learned;transferred;tried" per task, one task per line, returns comma-separated.
  std::string TransferStats() const {
    std::string out;
    const auto join = [](const std::deque<double>& v) {
      std::string s;
      for (size_t k = 0; k < v.size(); ++k) absl::StrAppend(&s, k ? "," : "", v[k]);
      return s;
    };
    for (int i = 0; i < num_tasks_; ++i) {
      absl::StrAppend(&out, join(learned_[i]), ";", join(transferred_[i]), ";", tried_source_[i],
                      "\n");
    }
    return out;
  }

  absl::Status ParseTransferStats(const std::string& text, std::vector<std::deque<double>>* learned,
                                  std::vector<std::deque<double>>* transferred,
                                  std::vector<int>* tried) const {
    const std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
    if (static_cast<int>(lines.size()) != num_tasks_) {
      return absl::InvalidArgumentError(absl::StrCat("the mcat checkpoint has ", lines.size(),
                                                     " tasks; this experiment has ", num_tasks_));
    }
    const auto parse = [](absl::string_view s, std::deque<double>* out) {
      for (absl::string_view x : absl::StrSplit(s, ',', absl::SkipEmpty())) {
        double v = 0;
        if (!absl::SimpleAtod(x, &v)) return false;
        out->push_back(v);
      }
      return true;
    };
    learned->assign(num_tasks_, {});
    transferred->assign(num_tasks_, {});
    tried->assign(num_tasks_, -1);
    for (int i = 0; i < num_tasks_; ++i) {
      const std::vector<absl::string_view> parts = absl::StrSplit(lines[i], ';');
      if (parts.size() != 3 || !parse(parts[0], &(*learned)[i]) ||
          !parse(parts[1], &(*transferred)[i]) || !absl::SimpleAtoi(parts[2], &(*tried)[i])) {
        return absl::DataLossError("the mcat checkpoint's transfer statistics are damaged");
      }
    }
    return absl::OkStatus();
  }

  const AlgorithmOptions options_;
  ModelStore* const models_;  // where Finish stores the translator; may be null
  const v1::McatConfig mcat_;
  const std::unique_ptr<Agent> agent_;
  const std::unique_ptr<models::McatModel> model_;
  const int num_tasks_;
  const int64_t window_;  // W = K + M transitions per row
  // recent training-episode returns per task, with the learned and the translated policy
  std::vector<std::deque<double>> learned_, transferred_;
  std::vector<int> plan_source_;   // the current plan: -1 or the source task
  std::vector<int> tried_source_;  // the source transferred_[i]'s episodes were measured with
};

}  // namespace

absl::StatusOr<std::unique_ptr<Algorithm>> CreateMcatAlgorithm(const AlgorithmOptions& options,
                                                               ModelStore* models) {
  v1::AlgorithmSpec algorithm = options.spec.algorithm();
  if (!algorithm.has_mcat()) return absl::InvalidArgumentError("algorithm: mcat is not set");
  PRL_RETURN_IF_ERROR(ResolveAlgorithmSpec(options.act_dim, &algorithm));
  const v1::McatConfig mcat = algorithm.mcat();
  if (mcat.train_tasks_size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "algorithm.mcat.train_tasks: ", mcat.train_tasks_size(), " tasks; mcat needs at least 2"));
  }
  AlgorithmOptions resolved = options;
  *resolved.spec.mutable_algorithm() = algorithm;

  // the context-conditioned TD3: a TD3 agent whose observation is [s, z]
  AgentOptions agent_options;
  agent_options.obs_dim = options.obs_dim + mcat.context_dim();
  agent_options.act_dim = options.act_dim;
  agent_options.algorithm = algorithm;
  *agent_options.algorithm.mutable_td3() = mcat.td3();  // replaces the oneof's mcat
  agent_options.device = options.device;
  agent_options.seed = static_cast<uint64_t>(algorithm.seed());
  agent_options.num_threads = options.num_threads;
  agent_options.updates_per_graph = options.updates_per_graph;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent, Agent::Create(agent_options));

  models::McatModelOptions model_options;
  model_options.dims = {options.obs_dim, options.act_dim, mcat.context_dim(),
                        mcat.context_history()};
  model_options.prediction_horizon = mcat.prediction_horizon();
  model_options.num_tasks = mcat.train_tasks_size();
  model_options.network = algorithm.network();
  model_options.contrastive_margin = mcat.contrastive_margin();
  model_options.contrastive_weight = mcat.contrastive_weight();
  model_options.model_lr = mcat.model_lr();
  model_options.translator_lr = mcat.translator_lr();
  model_options.device = agent->device();
  model_options.seed = static_cast<uint64_t>(algorithm.seed()) ^ 0x6d636174ULL;  // "mcat"
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::McatModel> model,
                       models::McatModel::Create(model_options));
  return std::unique_ptr<Algorithm>(
      new McatAlgorithm(resolved, std::move(agent), std::move(model), models));
}

}  // namespace prl::learner
