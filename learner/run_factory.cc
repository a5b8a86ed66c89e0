#include "learner/run_factory.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checksummed_file.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "env_desc/env_spec.h"
#include "learner/checkpoint.pb.h"

namespace prl::learner {

RunFactory MakeRunFactory(RunFactoryOptions options) {
  return [options = std::move(options)](
             const v1::Experiment& experiment,
             RunContext* context) -> absl::StatusOr<std::unique_ptr<ExperimentRun>> {
    const std::string dir = absl::StrCat(options.state_dir, "/experiments/", experiment.id());
    switch (experiment.spec().kind()) {
      case v1::ExperimentSpec::KIND_TRAIN: {
        TrainingRunOptions training = options.training;
        training.checkpoint_path = dir + "/checkpoint.bin";
        if (training.initial_state == nullptr) {
          training.initial_state = [state_dir = options.state_dir](
                                       const v1::PolicyRef& ref) -> absl::StatusOr<std::string> {
            PRL_ASSIGN_OR_RETURN(TrainedCheckpoint trained,
                                 ReadTrainedCheckpoint(ref, state_dir, "algorithm.init_from"));
            return std::move(*trained.checkpoint.mutable_agent_state());
          };
        }
        return CreateTrainingRun(experiment, context, training);
      }
      case v1::ExperimentSpec::KIND_COLLECT: {
        CollectRunOptions collect = options.collect;
        collect.work_dir = dir;
        if (collect.policy_loader == nullptr && options.training.algorithms != nullptr) {
          collect.policy_loader = [training = options.training,
                                   state_dir = options.state_dir](const v1::PolicyRef& ref) {
            return LoadTrainedPolicy(ref, training, state_dir);
          };
        }
        return CreateCollectRun(experiment, context, collect);
      }
      case v1::ExperimentSpec::KIND_EVALUATE: {
        EvaluateRunOptions evaluate;
        evaluate.registry = options.collect.registry;
        evaluate.policies = options.collect.policies;
        evaluate.metrics = options.collect.metrics;
        evaluate.models = options.prior_training.models;
        evaluate.prior_address = options.prior_address;
        if (options.training.algorithms != nullptr) {
          evaluate.policy_loader = [training = options.training,
                                    state_dir = options.state_dir](const v1::PolicyRef& ref) {
            return LoadTrainedPolicy(ref, training, state_dir, "evaluate.policy");
          };
        }
        return CreateEvaluateRun(experiment, context, evaluate);
      }
      case v1::ExperimentSpec::KIND_TRAIN_PRIOR: {
        PriorTrainingRunOptions prior = options.prior_training;
        prior.checkpoint_path = dir + "/prior_checkpoint.prl";
        return CreatePriorTrainingRun(experiment, context, prior);
      }
      default:
        return absl::UnimplementedError(
            absl::StrCat("kind: ", v1::ExperimentSpec::Kind_Name(experiment.spec().kind()),
                         " experiments are not run by this learner yet; it runs KIND_TRAIN, "
                         "KIND_COLLECT, KIND_TRAIN_PRIOR and KIND_EVALUATE"));
    }
  };
}

absl::StatusOr<TrainedCheckpoint> ReadTrainedCheckpoint(const v1::PolicyRef& ref,
                                                        const std::string& state_dir,
                                                        absl::string_view path) {
  const bool by_path = ref.has_checkpoint_path();
  const std::string field = absl::StrCat(path, by_path ? ".checkpoint_path" : ".experiment_id");
  TrainedCheckpoint out;
  out.path = by_path
                 ? ref.checkpoint_path()
                 : absl::StrCat(state_dir, "/experiments/", ref.experiment_id(), "/checkpoint.bin");
  absl::StatusOr<std::string> bytes = ReadChecksummedFile(out.path);
  if (!bytes.ok()) {
    return absl::Status(
        bytes.status().code(),
        by_path ? absl::StrCat(field, ": ", bytes.status().message())
                : absl::StrCat(field, ": ", ref.experiment_id(),
                               " has no checkpoint to take a policy from (is it a TRAIN "
                               "experiment of this learner that has run?): ",
                               bytes.status().message()));
  }
  TrainingCheckpoint& checkpoint = out.checkpoint;
  if (!checkpoint.ParseFromString(*bytes)) {
    return absl::DataLossError(
        absl::StrCat(field, ": ", out.path, " is not a training checkpoint"));
  }
  const std::string id = checkpoint.experiment_id();
  if (!by_path && id != ref.experiment_id()) {
    return absl::DataLossError(absl::StrCat(field, ": ", out.path, " belongs to ", id));
  }
  if (ref.version() != 0 && ref.version() != checkpoint.policy_version()) {
    return absl::NotFoundError(absl::StrCat(path, ".version: ", ref.version(),
                                            " is not available; the checkpoint of ", id,
                                            " holds version ", checkpoint.policy_version(),
                                            " (use 0 or ", checkpoint.policy_version(), ")"));
  }
  const std::string record_path = absl::StrCat(state_dir, "/experiments/", id, "/experiment.pb");
  absl::StatusOr<std::string> record_bytes = ReadChecksummedFile(record_path);
  if (!record_bytes.ok()) {
    return absl::Status(record_bytes.status().code(),
                        absl::StrCat(field, ": the experiment ", id,
                                     " of the checkpoint: ", record_bytes.status().message()));
  }
  v1::Experiment& record = out.record;
  if (!record.ParseFromString(*record_bytes)) {
    return absl::DataLossError(absl::StrCat(field, ": ", record_path, " is not an experiment"));
  }
  if (record.spec().kind() != v1::ExperimentSpec::KIND_TRAIN) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": ", id, " is a ", v1::ExperimentSpec::Kind_Name(record.spec().kind()),
                     " experiment; only KIND_TRAIN experiments have policies"));
  }
  return out;
}

absl::StatusOr<CollectPolicy> LoadTrainedPolicy(const v1::PolicyRef& ref,
                                                const TrainingRunOptions& training,
                                                const std::string& state_dir,
                                                absl::string_view path) {
  if (training.algorithms == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": this learner has no algorithms to load with"));
  }
  PRL_ASSIGN_OR_RETURN(TrainedCheckpoint trained, ReadTrainedCheckpoint(ref, state_dir, path));
  const TrainingCheckpoint& checkpoint = trained.checkpoint;
  const v1::Experiment& record = trained.record;
  const std::string& id = checkpoint.experiment_id();
  const std::string field =
      absl::StrCat(path, ref.has_checkpoint_path() ? ".checkpoint_path" : ".experiment_id");
  const env_desc::DomainInfo* domain = env_desc::FindDomain(record.spec().env().domain());
  if (domain == nullptr) {
    return absl::DataLossError(absl::StrCat(field, ": ", id, " has no env.domain"));
  }
  AlgorithmOptions options;
  options.spec = record.spec();
  options.obs_dim = domain->obs_dim;
  options.act_dim = domain->act_dim;
  options.device = "cpu";
  options.num_threads = training.torch_threads;
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Algorithm> algorithm, training.algorithms->Create(options));
  PRL_RETURN_IF_ERROR(algorithm->RestoreState(checkpoint.agent_state()));
  auto policy = std::make_shared<v1::Policy>();
  std::vector<std::pair<std::string, HostTensor>> weights;
  PRL_RETURN_IF_ERROR(algorithm->ExportPolicy(policy->mutable_architecture(), &weights));
  for (auto& [name, tensor] : weights) {
    v1::NamedTensor* named = policy->add_weights();
    named->set_name(name);
    TensorToProto(std::move(tensor), named->mutable_tensor());
  }
  policy->set_experiment_id(id);
  policy->set_version(checkpoint.policy_version());
  policy->set_env_steps(checkpoint.env_steps());
  policy->set_updates(checkpoint.updates());
  CollectPolicy out;
  algorithm->DescribeActing(&out.acting);
  *out.acting.mutable_policy() = policy->architecture();
  out.policy = std::move(policy);
  return out;
}

}  // namespace prl::learner
