// Submit-time validation of an ExperimentSpec against the contract in proto/experiment.proto:
// every field is checked, every defaulted field is filled with the value it resolves to (the
// spec the learner stores in Experiment.spec). The algorithm and network defaults come from
// learner/algorithm_defaults.h and models/network_spec.h, the resolvers Agent::Create uses, so
// Submit and the agent fill the same values; neither LibTorch nor MuJoCo is linked (env
// defaults come from env_desc/). Stateless functions; thread-safe.
#ifndef PRL_LEARNER_SPEC_VALIDATION_H_
#define PRL_LEARNER_SPEC_VALIDATION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

// Validates `spec` and returns it with every defaulted field filled with the value it resolved
// to, so validating the result again returns it unchanged. Two defaults depend on where the
// experiment runs and stay as given: replay.num_shards (0: every shard of the learner) and
// resources.learner_device ("": CUDA when available).
// Errors:
//   INVALID_ARGUMENT listing every problem, each as "<field path>: <value> is not allowed;
//     <what is allowed>" (common/field_error.h FieldProblem; e.g. "algorithm.discount: 1.5 is
//     not allowed; it must be in (0, 1], or 0 for the default 0.99"), joined by "; ".
//   UNIMPLEMENTED, naming the field, when the spec is valid as far as it was checked but asks
//     for something this learner cannot run yet: KIND_EVALUATE (only the common fields name,
//     kind, description and labels are checked then), an algorithm it does not have (mcat;
//     everything but that algorithm's own config is checked), or a prior kind it cannot train.
// INVALID_ARGUMENT wins when both apply.
absl::StatusOr<v1::ExperimentSpec> ValidateAndFillSpec(const v1::ExperimentSpec& spec);

// ValidateAndFillSpec plus what depends on the learner that runs the spec: replay.num_shards
// (TRAIN, COLLECT) may not exceed `replay_shards`, the shards it trains with
// (--learner_replay). What depends on its stored state (dataset names) is checked by
// CheckDatasetReferences (learner/dataset_store.h) in the binary. Errors:
// ValidateAndFillSpec's; INVALID_ARGUMENT "replay.num_shards: 5 is not allowed; this learner
// has 1 replay shard ...".
absl::StatusOr<v1::ExperimentSpec> ValidateSpecForLearner(const v1::ExperimentSpec& spec,
                                                          int replay_shards);

// The INVALID_ARGUMENT problems of `spec` only, one entry per problem, with the texts
// ValidateAndFillSpec joins; empty when the spec is valid. Unsupported parts (UNIMPLEMENTED)
// are not problems: a spec with none may still be refused by this learner.
std::vector<std::string> SpecProblems(const v1::ExperimentSpec& spec);

}  // namespace prl::learner

#endif  // PRL_LEARNER_SPEC_VALIDATION_H_
