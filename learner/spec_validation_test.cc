#include "learner/spec_validation.h"

#include <dirent.h>

#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/spec_file.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// The smallest valid TRAIN spec; every other field takes its default.
constexpr char kMinimalSpec[] = R"pb(
  name: "t"
  kind: KIND_TRAIN
  env { domain: DOMAIN_CHEETAH }
  algorithm { sac {} }
  stop { max_env_steps: 1000 }
)pb";

// kMinimalSpec with the top-level fields in `clear` (comma-separated) cleared, then `overlay`
// (text format) merged on top.
v1::ExperimentSpec Spec(absl::string_view clear, const std::string& overlay) {
  v1::ExperimentSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(kMinimalSpec, &spec));
  for (absl::string_view field : absl::StrSplit(clear, ',', absl::SkipEmpty())) {
    const auto* descriptor = spec.GetDescriptor()->FindFieldByName(std::string(field));
    EXPECT_NE(descriptor, nullptr) << field;
    if (descriptor != nullptr) spec.GetReflection()->ClearField(&spec, descriptor);
  }
  EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(overlay, &spec)) << overlay;
  return spec;
}

// Validates `spec` twice: the filled spec must validate to itself.
void ExpectIdempotent(const v1::ExperimentSpec& spec) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  ASSERT_TRUE(filled.ok()) << filled.status();
  absl::StatusOr<v1::ExperimentSpec> again = ValidateAndFillSpec(*filled);
  ASSERT_TRUE(again.ok()) << again.status();
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(*filled, *again)) << diff;
}

TEST(SpecValidationTest, MinimalSpecIsValid) {
  EXPECT_THAT(SpecProblems(Spec("", "")), IsEmpty());
  EXPECT_TRUE(ValidateAndFillSpec(Spec("", "")).ok());
}

struct InvalidCase {
  const char* clear;     // top-level fields of kMinimalSpec to clear
  const char* overlay;   // text format merged on top
  const char* expected;  // "<field path>: <value>" the single problem must start with
  std::function<void(v1::ExperimentSpec*)> mutate = nullptr;
};

TEST(SpecValidationTest, EveryBadFieldIsNamedWithItsValue) {
  const InvalidCase cases[] = {
      // common fields
      {"", "name: ''", "name: \"\""},
      {"", "name: 'Cheetah'", "name: \"Cheetah\""},
      {"", "name: '9lives'", "name: \"9lives\""},
      {"", "name: 'a b'", "name: \"a b\""},
      {"", "", "name: \"aaaa", [](auto* s) { s->set_name(std::string(64, 'a')); }},
      {"kind", "", "kind: KIND_UNSPECIFIED"},
      {"", "kind: 9", "kind: 9"},
      {"", "", "description: 4097 bytes",
       [](auto* s) { s->set_description(std::string(4097, 'x')); }},
      {"", "", "labels: 33 entries",
       [](auto* s) {
         for (int i = 0; i < 33; ++i) (*s->mutable_labels())[absl::StrCat("k", i)] = "v";
       }},
      {"", "labels { key: 'Bad Key' value: 'x' }", "labels[\"Bad Key\"]: key \"Bad Key\""},
      {"", "", "labels[\"k\"]: a value of 257 bytes",
       [](auto* s) { (*s->mutable_labels())["k"] = std::string(257, 'v'); }},
      // env, through ValidateEnvSpec
      {"env", "", "env: unset"},
      {"", "env { dynamics { mass_scale: -1 } }", "env.dynamics.mass_scale: -1"},
      {"", "env { reward_delay: -2 }", "env.reward_delay: -2"},
      // algorithm configs
      {"algorithm", "", "algorithm: unset"},
      {"", "algorithm { sac { initial_alpha: -1 } }", "algorithm.sac.initial_alpha: -1"},
      {"", "algorithm { sac { alpha_lr: -0.5 } }", "algorithm.sac.alpha_lr: -0.5"},
      {"", "algorithm { sac { target_entropy: inf } }", "algorithm.sac.target_entropy: inf"},
      {"algorithm", "algorithm { td3 { policy_noise: -0.2 } }", "algorithm.td3.policy_noise: -0.2"},
      {"algorithm", "algorithm { td3 { noise_clip: -1 } }", "algorithm.td3.noise_clip: -1"},
      {"algorithm", "algorithm { td3 { policy_delay: -1 } }", "algorithm.td3.policy_delay: -1"},
      {"", "algorithm { n_step: -1 }", "algorithm.n_step: -1"},
      {"", "algorithm { n_step: 1001 }", "algorithm.n_step: 1001"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks {} } n_step: 3 }",
       "algorithm.n_step: 3"},
      {"algorithm", "algorithm { spirl {} n_step: 10 } prior { name: 'p' }",
       "algorithm.n_step: 10"},
      {"algorithm", "algorithm { td3 { exploration_noise: -0.1 } }",
       "algorithm.td3.exploration_noise: -0.1"},
      // network
      {"", "algorithm { network { hidden_sizes: [64, 0] } }",
       "algorithm.network.hidden_sizes[1]: 0"},
      {"", "algorithm { network { hidden_sizes: [5000] } }",
       "algorithm.network.hidden_sizes[0]: 5000"},
      {"", "algorithm { network { hidden_sizes: [1, 1, 1, 1, 1, 1, 1, 1, 1] } }",
       "algorithm.network.hidden_sizes: 9 layers"},
      // a policy must fit the one message it travels to the actors in (and a checkpoint the
      // 2 GiB protobuf limit)
      {"", "algorithm { network { hidden_sizes: [4096, 4096] } }",
       "algorithm.network.hidden_sizes: [4096, 4096] (16904204 policy parameters)"},
      {"", "algorithm { network { hidden_sizes: [4096, 4096, 4096, 4096, 4096] } }",
       "algorithm.network.hidden_sizes: [4096, 4096, 4096, 4096, 4096] (67248140 policy "
       "parameters) is not allowed; at most 12000000 parameters"},
      {"", "algorithm { network { activation: 42 } }", "algorithm.network.activation: 42"},
      // shared hyperparameters
      {"", "algorithm { discount: 1.5 }", "algorithm.discount: 1.5"},
      {"", "algorithm { discount: -0.1 }", "algorithm.discount: -0.1"},
      {"", "algorithm { tau: 2 }", "algorithm.tau: 2"},
      {"", "algorithm { target_update_period: -1 }", "algorithm.target_update_period: -1"},
      {"", "algorithm { batch_size: 65537 }", "algorithm.batch_size: 65537"},
      {"", "algorithm { batch_size: -1 }", "algorithm.batch_size: -1"},
      {"", "algorithm { actor_lr: -1 }", "algorithm.actor_lr: -1"},
      {"", "algorithm { critic_lr: nan }", "algorithm.critic_lr: nan"},
      {"", "algorithm { reward_scale: inf }", "algorithm.reward_scale: inf"},
      {"", "algorithm { max_grad_norm: -1 }", "algorithm.max_grad_norm: -1"},
      // prior
      {"", "prior { name: 'p' }", "prior: \"p\" (version 0)"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks {} } } prior { name: 'p' }",
       "prior: \"p\" (version 0)"},
      // mcat
      {"algorithm", "algorithm { mcat { train_tasks { armature_scale: 2 } } }",
       "algorithm.mcat.train_tasks: 1 tasks"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks { armature_scale: -2 } } }",
       "algorithm.mcat.train_tasks[1].armature_scale: -2"},
      {"algorithm",
       "algorithm { mcat { train_tasks {} train_tasks {} test_tasks { mass_scale: -1 } } }",
       "algorithm.mcat.test_tasks[0].mass_scale: -1"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks {} context_dim: 300 } }",
       "algorithm.mcat.context_dim: 300"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks {} context_history: -1 } }",
       "algorithm.mcat.context_history: -1"},
      {"algorithm",
       "algorithm { mcat { train_tasks {} train_tasks {} "
       "self_imitation_importance_exponent: 2 } }",
       "algorithm.mcat.self_imitation_importance_exponent: 2"},
      {"algorithm", "algorithm { mcat { train_tasks {} train_tasks {} td3 { policy_noise: -1 } } }",
       "algorithm.mcat.td3.policy_noise: -1"},
      {"algorithm", "algorithm { parrot {} }", "prior: unset"},
      {"algorithm", "algorithm { spirl {} } prior { name: 'Bad' }", "prior.name: \"Bad\""},
      {"algorithm", "algorithm { eap {} } prior { name: 'p' version: -1 }", "prior.version: -1"},
      // replay
      {"", "replay { capacity: 100 }", "replay.capacity: 100"},
      {"", "replay { capacity: -5 }", "replay.capacity: -5"},
      {"", "replay { capacity: 200000000 }", "replay.capacity: 200000000"},
      {"", "replay { sampler: 7 }", "replay.sampler: 7"},
      {"", "replay { sampler: SAMPLER_PRIORITIZED priority_exponent: -1 }",
       "replay.priority_exponent: -1"},
      {"", "replay { sampler: SAMPLER_PRIORITIZED importance_sampling_exponent: -0.4 }",
       "replay.importance_sampling_exponent: -0.4"},
      {"", "replay { priority_exponent: 0.5 }", "replay.priority_exponent: 0.5"},
      {"", "replay { sampler: SAMPLER_FIFO importance_sampling_exponent: 1 }",
       "replay.importance_sampling_exponent: 1"},
      {"", "replay { samples_per_insert: nan }", "replay.samples_per_insert: nan"},
      {"", "replay { samples_per_insert: 10 error_buffer: 0.5 }", "replay.error_buffer: 0.5"},
      {"", "replay { samples_per_insert: -1 error_buffer: -1 }", "replay.error_buffer: -1"},
      {"", "replay { min_size_to_sample: 2000000 }", "replay.min_size_to_sample: 2000000"},
      {"", "replay { min_size_to_sample: -1 }", "replay.min_size_to_sample: -1"},
      {"", "replay { capacity: 500 }", "replay.min_size_to_sample: 1000 (the default for 0)"},
      {"", "replay { max_times_sampled: -1 }", "replay.max_times_sampled: -1"},
      {"", "replay { num_shards: -2 }", "replay.num_shards: -2"},
      // resources
      {"", "resources { num_actors: 1025 }", "resources.num_actors: 1025"},
      {"", "resources { num_actors: -1 }", "resources.num_actors: -1"},
      {"", "resources { envs_per_actor: 2000 }", "resources.envs_per_actor: 2000"},
      {"", "resources { learner_device: 'gpu' }", "resources.learner_device: \"gpu\""},
      {"", "resources { learner_device: 'cuda:' }", "resources.learner_device: \"cuda:\""},
      {"", "resources { learner_device: 'cuda:x' }", "resources.learner_device: \"cuda:x\""},
      {"", "resources { learner_device: 'CPU' }", "resources.learner_device: \"CPU\""},
      // stop
      {"stop", "", "stop: unset"},
      {"stop", "stop { target_return: 1 }", "stop: no limit"},
      {"", "stop { max_updates: -1 }", "stop.max_updates: -1"},
      {"", "stop { max_wall_time_seconds: -3 }", "stop.max_wall_time_seconds: -3"},
      {"", "stop { target_return: nan }", "stop.target_return: nan"},
      // evaluation
      {"", "evaluation { every_env_steps: -1 }", "evaluation.every_env_steps: -1"},
      {"", "evaluation { episodes: 10001 }", "evaluation.episodes: 10001"},
      {"", "evaluation { episodes: -1 }", "evaluation.episodes: -1"},
      // fine-tuning
      {"", "algorithm { init_from { } }", "algorithm.init_from: no source"},
      {"", "algorithm { init_from { experiment_id: '' } }",
       "algorithm.init_from.experiment_id: \"\""},
      {"", "algorithm { init_from { experiment_id: 'exp-1' version: -1 } }",
       "algorithm.init_from.version: -1"},
      {"", "algorithm { init_from { checkpoint_path: '/c' version: 2 } }",
       "algorithm.init_from.version: 2"},
      {"algorithm",
       "algorithm { mcat { train_tasks { armature_scale: 0.5 } train_tasks { armature_scale: 1.5 } "
       "test_tasks { armature_scale: 1 } } "
       "init_from { experiment_id: 'exp-1' } }",
       "algorithm.init_from: set is not allowed; fine-tuning is for algorithm.sac and "
       "algorithm.td3, not algorithm.mcat"},
      // parts of other kinds
      {"", "collect { collector: COLLECTOR_RANDOM }", "collect: set with KIND_TRAIN"},
      {"", "prior_training {}", "prior_training: set with KIND_TRAIN"},
      {"", "evaluate {}", "evaluate: set with KIND_TRAIN"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.expected, " from clear '", c.clear, "' and '", c.overlay, "'"));
    v1::ExperimentSpec spec = Spec(c.clear, c.overlay);
    if (c.mutate) c.mutate(&spec);
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    ASSERT_FALSE(filled.ok());
    EXPECT_EQ(filled.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(filled.status().message(), HasSubstr(c.expected));
    const std::vector<std::string> problems = SpecProblems(spec);
    ASSERT_THAT(problems, SizeIs(1));
    EXPECT_TRUE(absl::StartsWith(problems[0], c.expected)) << problems[0];
    // env_spec words a few of its problems differently; ours all follow the one form
    if (!absl::StartsWith(c.expected, "env.")) {
      EXPECT_THAT(problems[0], HasSubstr(" is not allowed; ")) << problems[0];
      EXPECT_EQ(problems[0].find("; "), problems[0].rfind("; ")) << "one \"; \" only";
    }
  }
}

// Every kind and every part of the API runs on this learner now: what used to be UNIMPLEMENTED
// (KIND_EVALUATE, PRIOR_KIND_ACTION_TRANSLATOR, publish) validates.
TEST(SpecValidationTest, EveryKindAndPartIsSupported) {
  for (const char* overlay :
       {"kind: KIND_TRAIN_PRIOR prior_training { kind: PRIOR_KIND_SKILL_VAE dataset: 'd.h5' "
        "output_model: 'm' publish: true }",
        "kind: KIND_EVALUATE evaluate { policy { experiment_id: 'exp-000001' } }"}) {
    SCOPED_TRACE(overlay);
    const v1::ExperimentSpec spec = Spec("", overlay);
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    EXPECT_TRUE(filled.ok()) << filled.status();
  }
}

TEST(SpecValidationTest, EapIsFilledWithItsDefaultsAndNeedsAPrior) {
  absl::StatusOr<v1::ExperimentSpec> filled =
      ValidateAndFillSpec(Spec("algorithm", "algorithm { eap {} } prior { name: 'p' }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::EapConfig& eap = filled->algorithm().eap();
  EXPECT_DOUBLE_EQ(eap.target_divergence(), 1.0);
  EXPECT_DOUBLE_EQ(eap.initial_alpha(), 1.0);
  EXPECT_DOUBLE_EQ(eap.alpha_lr(), 3e-4);
  EXPECT_DOUBLE_EQ(eap.latent_bound(), 2.0);
  EXPECT_EQ(eap.horizon(), 0);  // the prior's k, once known
  EXPECT_EQ(filled->algorithm().warmup_env_steps(), 5000);
  const absl::Status no_prior =
      ValidateAndFillSpec(Spec("algorithm", "algorithm { eap {} }")).status();
  EXPECT_EQ(no_prior.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_prior.message(), HasSubstr("prior"));
  const absl::Status bad =
      ValidateAndFillSpec(Spec("algorithm",
                               "algorithm { eap { horizon: -1 latent_bound: -2 } } "
                               "prior { name: 'p' }"))
          .status();
  EXPECT_THAT(bad.message(), HasSubstr("algorithm.eap.horizon: -1"));
  EXPECT_THAT(bad.message(), HasSubstr("algorithm.eap.latent_bound"));
}

TEST(SpecValidationTest, McatIsFilledWithItsDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(
      Spec("algorithm",
           "algorithm { mcat { train_tasks { armature_scale: 0.5 } "
           "train_tasks { armature_scale: 1.5 } test_tasks { armature_scale: 1 } } } "
           "env { reward_delay: 500 }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::McatConfig& m = filled->algorithm().mcat();
  EXPECT_EQ(m.td3().policy_noise(), 0.2);
  EXPECT_EQ(m.td3().noise_clip(), 0.5);
  EXPECT_EQ(m.td3().policy_delay(), 2);
  EXPECT_EQ(m.context_history(), 10);
  EXPECT_EQ(m.prediction_horizon(), 10);
  EXPECT_EQ(m.context_dim(), 10);
  EXPECT_EQ(m.contrastive_margin(), 1.0);
  EXPECT_EQ(m.contrastive_weight(), 0.01);
  EXPECT_EQ(m.transfer_window_episodes(), 10);
  EXPECT_EQ(m.self_imitation_weight(), 1.0);
  EXPECT_EQ(m.self_imitation_capacity(), 100000);
  EXPECT_EQ(m.self_imitation_priority_exponent(), 0.6);
  EXPECT_EQ(m.self_imitation_importance_exponent(), 0.1);
  EXPECT_EQ(filled->algorithm().batch_size(), 256);
  EXPECT_EQ(filled->algorithm().discount(), 0.99);
  EXPECT_EQ(filled->algorithm().tau(), 0.005);
  EXPECT_EQ(m.train_tasks_size(), 2);
}

TEST(SpecValidationTest, InitFromIsKeptAsGiven) {
  for (const char* overlay :
       {"algorithm { init_from { experiment_id: 'exp-000001' } warmup_env_steps: -1 }",
        "algorithm { init_from { experiment_id: 'exp-000001' version: 7 } }",
        "algorithm { td3 {} init_from { checkpoint_path: 'state/experiments/exp-1/checkpoint.bin' "
        "} }"}) {
    SCOPED_TRACE(overlay);
    const v1::ExperimentSpec spec = Spec("", overlay);
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
    ASSERT_TRUE(filled.ok()) << filled.status();
    EXPECT_TRUE(
        MessageDifferencer::Equals(filled->algorithm().init_from(), spec.algorithm().init_from()));
    ExpectIdempotent(spec);
  }
}

TEST(SpecValidationTest, ReportsEveryProblem) {
  const v1::ExperimentSpec spec =
      Spec("stop", "name: 'Bad' algorithm { discount: 2 } replay { capacity: 10 } env { seed: 3 }");
  const std::vector<std::string> problems = SpecProblems(spec);
  EXPECT_THAT(problems, ElementsAre(HasSubstr("name: \"Bad\""), HasSubstr("algorithm.discount: 2"),
                                    HasSubstr("replay.capacity: 10"), HasSubstr("stop: unset")));
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  EXPECT_EQ(filled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(filled.status().message(), absl::StrJoin(problems, "; "));
}

TEST(SpecValidationTest, FillsEveryDefaultOfAMinimalSpec) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(Spec("", "env { seed: 7 }"));
  ASSERT_TRUE(filled.ok()) << filled.status();

  const v1::EnvSpec& env = filled->env();
  EXPECT_EQ(env.task(), "run_forward");
  EXPECT_EQ(env.episode_length(), 1000);
  EXPECT_EQ(env.dynamics().mass_scale(), 1.0);
  EXPECT_EQ(env.dynamics().armature_scale(), 1.0);
  EXPECT_EQ(env.dynamics().damping_scale(), 1.0);
  EXPECT_EQ(env.reward_delay(), 0);

  const v1::AlgorithmSpec& a = filled->algorithm();
  EXPECT_EQ(a.sac().initial_alpha(), 1.0);
  EXPECT_FALSE(a.sac().fixed_alpha());
  ASSERT_TRUE(a.sac().has_target_entropy());
  EXPECT_EQ(a.sac().target_entropy(), -6.0);  // -|A| for the cheetah
  EXPECT_EQ(a.sac().alpha_lr(), 3e-4);
  EXPECT_THAT(a.network().hidden_sizes(), ElementsAre(256, 256));
  EXPECT_EQ(a.network().activation(), v1::NetworkSpec::ACTIVATION_RELU);
  EXPECT_FALSE(a.network().layer_norm());
  EXPECT_EQ(a.discount(), 0.99);
  EXPECT_EQ(a.tau(), 0.005);
  EXPECT_EQ(a.target_update_period(), 1);
  EXPECT_EQ(a.batch_size(), 256);
  EXPECT_EQ(a.actor_lr(), 3e-4);
  EXPECT_EQ(a.critic_lr(), 3e-4);
  EXPECT_EQ(a.reward_scale(), 1.0);
  EXPECT_EQ(a.max_grad_norm(), 0.0);  // no clipping
  EXPECT_EQ(a.warmup_env_steps(), 10000);
  EXPECT_EQ(a.seed(), 7);  // EnvSpec.seed
  EXPECT_FALSE(filled->has_prior());

  const v1::ReplaySpec& r = filled->replay();
  EXPECT_EQ(r.capacity(), 1000000);
  EXPECT_EQ(r.sampler(), v1::SAMPLER_UNIFORM);
  EXPECT_EQ(r.priority_exponent(), 0.0);  // PRIORITIZED only
  EXPECT_EQ(r.importance_sampling_exponent(), 0.0);
  EXPECT_EQ(r.samples_per_insert(), 256.0);    // batch_size
  EXPECT_EQ(r.error_buffer(), 100.0 * 256.0);  // 100 x max(1, samples_per_insert)
  EXPECT_EQ(r.min_size_to_sample(), 1000);     // max(1000, batch_size)
  EXPECT_EQ(r.max_times_sampled(), 0);
  EXPECT_EQ(r.num_shards(), 0);

  EXPECT_EQ(filled->resources().num_actors(), 1);
  EXPECT_EQ(filled->resources().envs_per_actor(), 1);
  EXPECT_EQ(filled->resources().learner_device(), "");
  EXPECT_EQ(filled->stop().max_env_steps(), 1000);
  EXPECT_FALSE(filled->stop().has_target_return());
  EXPECT_EQ(filled->evaluation().every_env_steps(), 10000);
  EXPECT_EQ(filled->evaluation().episodes(), 10);
  EXPECT_FALSE(filled->evaluation().disabled());
}

// The fields of `message` (not descending into sub-messages) still at their zero value, or
// unset when they track presence, except those named in `zero_by_design` (fields whose
// documented default is the zero value itself, e.g. "0 means no limit").
std::vector<std::string> UnfilledFields(const google::protobuf::Message& message,
                                        const std::string& path,
                                        const std::set<std::string>& zero_by_design) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  std::vector<std::string> unfilled;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string name = absl::StrCat(path, ".", field->name());
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !field->is_repeated()) continue;
    if (zero_by_design.count(name) > 0) continue;
    bool filled = false;
    if (field->is_repeated()) {
      filled = reflection->FieldSize(message, field) > 0;
    } else if (field->has_presence()) {
      filled = reflection->HasField(message, field);
    } else {
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_DOUBLE:
          filled = reflection->GetDouble(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          filled = reflection->GetFloat(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          filled = reflection->GetInt32(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          filled = reflection->GetInt64(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          filled = reflection->GetUInt32(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          filled = reflection->GetUInt64(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          filled = reflection->GetEnumValue(message, field) != 0;
          break;
        case FieldDescriptor::CPPTYPE_STRING:
          filled = !reflection->GetString(message, field).empty();
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          filled = reflection->GetBool(message, field);
          break;
        default:
          break;
      }
    }
    if (!filled) unfilled.push_back(name);
  }
  return unfilled;
}

// Every field of the parts below whose proto comment documents a default ("0 means ...",
// "UNSPECIFIED means ...", "Unset means ...") comes back filled, for sac and td3 and for both
// kinds of sampler. A field added to these messages must either be filled or be listed here
// with the reason its zero value is kept.
TEST(SpecValidationTest, MinimalSpecComesBackWithEveryDocumentedDefault) {
  const std::set<std::string> zero_by_design = {
      // false is the documented default of every bool here
      "algorithm.sac.fixed_alpha", "algorithm.network.layer_norm", "evaluation.stochastic",
      "evaluation.disabled",
      "algorithm.max_grad_norm",   // 0: no clipping
      "replay.max_times_sampled",  // 0: unlimited
      "replay.num_shards",         // 0: every shard of the learner, known only when the run starts
      "resources.learner_device",  // "": CUDA when available, decided on the learner's machine
      // 0: no limit (kMinimalSpec sets max_env_steps)
      "stop.max_updates", "stop.max_wall_time_seconds",
      "stop.target_return",  // unset: no return target
  };
  struct Case {
    const char* clear;
    const char* overlay;
    std::set<std::string> also_zero;
  } cases[] = {
      // the exponents are PRIORITIZED only and must stay 0 with other samplers
      {"", "env { seed: 7 }", {"replay.priority_exponent", "replay.importance_sampling_exponent"}},
      {"", "env { seed: 7 } replay { sampler: SAMPLER_PRIORITIZED }", {}},
      {"algorithm",
       "env { seed: 7 } algorithm { td3 {} }",
       {"replay.priority_exponent", "replay.importance_sampling_exponent"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.overlay);
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(Spec(c.clear, c.overlay));
    ASSERT_TRUE(filled.ok()) << filled.status();
    std::set<std::string> zero = zero_by_design;
    zero.insert(c.also_zero.begin(), c.also_zero.end());
    const v1::AlgorithmSpec& a = filled->algorithm();
    const std::pair<const google::protobuf::Message*, const char*> parts[] = {
        {a.has_sac() ? static_cast<const google::protobuf::Message*>(&a.sac()) : &a.td3(),
         a.has_sac() ? "algorithm.sac" : "algorithm.td3"},
        {&a, "algorithm"},
        {&a.network(), "algorithm.network"},
        {&filled->replay(), "replay"},
        {&filled->resources(), "resources"},
        {&filled->stop(), "stop"},
        {&filled->evaluation(), "evaluation"},
    };
    for (const auto& [message, path] : parts) {
      EXPECT_THAT(UnfilledFields(*message, path, zero), IsEmpty()) << path;
    }
  }
}

TEST(SpecValidationTest, FillsTd3AndPrioritizedDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(
      Spec("algorithm", "algorithm { td3 {} } replay { sampler: SAMPLER_PRIORITIZED }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::Td3Config& td3 = filled->algorithm().td3();
  EXPECT_EQ(td3.policy_noise(), 0.2);
  EXPECT_EQ(td3.noise_clip(), 0.5);
  EXPECT_EQ(td3.policy_delay(), 2);
  EXPECT_EQ(td3.exploration_noise(), 0.1);
  EXPECT_EQ(filled->replay().priority_exponent(), 0.6);
  EXPECT_EQ(filled->replay().importance_sampling_exponent(), 0.4);
}

TEST(SpecValidationTest, DefaultsFollowBatchSizeAndSignConventions) {
  absl::StatusOr<v1::ExperimentSpec> filled =
      ValidateAndFillSpec(Spec("",
                               "algorithm { batch_size: 2048 warmup_env_steps: -5 }"
                               "env { domain: DOMAIN_ANT }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_EQ(filled->algorithm().warmup_env_steps(), -1);  // none
  EXPECT_EQ(filled->algorithm().sac().target_entropy(), -8.0);
  EXPECT_EQ(filled->replay().samples_per_insert(), 2048.0);
  EXPECT_EQ(filled->replay().error_buffer(), 204800.0);
  EXPECT_EQ(filled->replay().min_size_to_sample(), 2048);

  filled = ValidateAndFillSpec(Spec("", "replay { samples_per_insert: -3 }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_EQ(filled->replay().samples_per_insert(), -1.0);  // no ratio limit
  EXPECT_EQ(filled->replay().error_buffer(), 100.0);

  // values given are kept
  filled = ValidateAndFillSpec(
      Spec("", "algorithm { seed: 5 reward_scale: -2 sac { target_entropy: 0 } } env { seed: 9 }"));
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_EQ(filled->algorithm().seed(), 5);
  EXPECT_EQ(filled->algorithm().reward_scale(), -2.0);
  EXPECT_EQ(filled->algorithm().sac().target_entropy(), 0.0);
}

TEST(SpecValidationTest, FillingIsIdempotent) {
  ExpectIdempotent(Spec("", ""));
  ExpectIdempotent(Spec("algorithm", "algorithm { td3 {} } env { domain: DOMAIN_POINT_MAZE }"));
  ExpectIdempotent(
      Spec("", "env { domain: DOMAIN_HOPPER } replay { sampler: SAMPLER_PRIORITIZED }"));
  ExpectIdempotent(Spec("",
                        "env { domain: DOMAIN_ANT seed: 4 } algorithm { warmup_env_steps: -9 }"
                        "replay { samples_per_insert: -2 }"));
}

std::vector<std::string> ExampleSpecs() {
  std::vector<std::string> paths;
  const std::string dir = std::string(std::getenv("TEST_SRCDIR")) + "/prl/examples";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return paths;
  while (dirent* e = readdir(d)) {
    if (absl::EndsWith(e->d_name, ".textproto")) paths.push_back(dir + "/" + e->d_name);
  }
  closedir(d);
  return paths;
}

TEST(SpecValidationTest, EveryExampleValidates) {
  int validated = 0;
  for (const std::string& path : ExampleSpecs()) {
    SCOPED_TRACE(path);
    absl::StatusOr<v1::ExperimentSpec> spec = cli::ReadSpecFile(path);
    ASSERT_TRUE(spec.ok()) << spec.status();
    absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(*spec);
    // examples of kinds and algorithms this learner cannot run yet must still be valid
    if (filled.status().code() == absl::StatusCode::kUnimplemented) {
      EXPECT_THAT(SpecProblems(*spec), IsEmpty());
      continue;
    }
    ASSERT_TRUE(filled.ok()) << filled.status();
    ExpectIdempotent(*spec);
    ++validated;
  }
  // cheetah_sac, cheetah_td3, cheetah_backward_sac, maze_sac
  EXPECT_GE(validated, 4);
}

TEST(ValidateSpecForLearnerTest, MoreReplayShardsThanTheLearnerHasAreRefused) {
  v1::ExperimentSpec spec;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "shards"
        kind: KIND_TRAIN
        env { domain: DOMAIN_CHEETAH task: "run_forward" }
        algorithm { sac {} }
        replay { num_shards: 5 }
        stop { max_env_steps: 1000 }
      )pb",
      &spec));
  const absl::Status s = ValidateSpecForLearner(spec, 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("replay.num_shards: 5 is not allowed; this learner has 1 replay shard "
                        "(--learner_replay)"));
  EXPECT_TRUE(ValidateSpecForLearner(spec, 5).ok());
  spec.mutable_replay()->set_num_shards(0);
  EXPECT_TRUE(ValidateSpecForLearner(spec, 1).ok());
}

v1::ExperimentSpec PriorSpec(const std::string& prior_training) {
  v1::ExperimentSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("name: \"prior\" kind: KIND_TRAIN_PRIOR prior_training { ", prior_training,
                   " }"),
      &spec));
  return spec;
}

TEST(TrainPriorSpecTest, ASkillModelSpecIsFilledWithSpirlsDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(
      PriorSpec("kind: PRIOR_KIND_SKILL_VAE dataset: \"maze.hdf5\" output_model: \"maze-skills\""));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::PriorTrainingSpec& p = filled->prior_training();
  EXPECT_EQ(p.horizon(), 10);
  EXPECT_EQ(p.latent_dim(), 10);
  EXPECT_DOUBLE_EQ(p.beta(), 1e-2);
  EXPECT_THAT(p.network().hidden_sizes(), ElementsAre(128, 128, 128, 128, 128));
  EXPECT_EQ(p.epochs(), 200);
  EXPECT_EQ(p.batch_size(), 128);
  EXPECT_DOUBLE_EQ(p.lr(), 1e-3);
  // idempotent
  absl::StatusOr<v1::ExperimentSpec> again = ValidateAndFillSpec(*filled);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*again, *filled));
}

TEST(TrainPriorSpecTest, AFlowSpecIsFilledWithParrotsDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(PriorSpec(
      "kind: PRIOR_KIND_REAL_NVP_FLOW dataset: \"maze.hdf5\" output_model: \"maze-flow\""));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::PriorTrainingSpec& p = filled->prior_training();
  EXPECT_EQ(p.horizon(), 1);
  EXPECT_EQ(p.num_coupling_layers(), 4);
  EXPECT_THAT(p.network().hidden_sizes(), ElementsAre(256, 256));
  EXPECT_EQ(p.max_steps(), 500000);
  EXPECT_DOUBLE_EQ(p.lr(), 1e-4);
}

TEST(TrainPriorSpecTest, EveryBadFieldIsNamed) {
  const absl::Status s =
      ValidateAndFillSpec(
          PriorSpec("kind: PRIOR_KIND_REAL_NVP_FLOW output_model: \"Bad\" horizon: 5 beta: 0.1 "
                    "batch_size: -1 network { hidden_sizes: [0] }"))
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  for (const char* field :
       {"prior_training.dataset", "prior_training.output_model", "prior_training.horizon: 5",
        "prior_training.beta: 0.1", "prior_training.batch_size: -1",
        "prior_training.network.hidden_sizes[0]"}) {
    EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  }
  const absl::Status missing = ValidateAndFillSpec(PriorSpec("")).status();
  EXPECT_THAT(std::string(missing.message()), HasSubstr("prior_training.kind"));
  v1::ExperimentSpec with_collect =
      PriorSpec("kind: PRIOR_KIND_SKILL_VAE dataset: \"d.h5\" output_model: \"m\"");
  with_collect.mutable_collect();
  EXPECT_THAT(std::string(ValidateAndFillSpec(with_collect).status().message()),
              HasSubstr("collect: set with KIND_TRAIN_PRIOR is not allowed"));
}

TEST(TrainPriorSpecTest, ACvaeSpecIsFilledWithTheLatentSacGeneratorsDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(
      PriorSpec("kind: PRIOR_KIND_CVAE dataset: \"d.h5\" output_model: \"cvae\""));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::PriorTrainingSpec& p = filled->prior_training();
  EXPECT_EQ(p.horizon(), 1);
  EXPECT_EQ(p.latent_dim(), 10);
  EXPECT_DOUBLE_EQ(p.beta(), 1e-2);
  EXPECT_THAT(p.network().hidden_sizes(), ElementsAre(128, 128, 128, 128, 128));
  EXPECT_EQ(p.epochs(), 200);
  // EAP: k > 1 as given
  absl::StatusOr<v1::ExperimentSpec> eap = ValidateAndFillSpec(
      PriorSpec("kind: PRIOR_KIND_CVAE dataset: \"d.h5\" output_model: \"eap\" horizon: 10"));
  ASSERT_TRUE(eap.ok()) << eap.status();
  EXPECT_EQ(eap->prior_training().horizon(), 10);
}

TEST(TrainPriorSpecTest, AnActionTranslatorIsFilledWithItsDefaults) {
  absl::StatusOr<v1::ExperimentSpec> filled =
      ValidateAndFillSpec(PriorSpec("kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: \"a.h5\" "
                                    "target_dataset: \"b.h5\" output_model: \"t\""));
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::PriorTrainingSpec& p = filled->prior_training();
  EXPECT_EQ(p.horizon(), 1);
  EXPECT_EQ(p.latent_dim(), 0);
  EXPECT_EQ(p.epochs(), 100);
  EXPECT_DOUBLE_EQ(p.lr(), 3e-4);
  EXPECT_EQ(p.batch_size(), 128);
  EXPECT_THAT(p.network().hidden_sizes(), ElementsAre(256, 256));
}

TEST(TrainPriorSpecTest, AnActionTranslatorNeedsATargetDatasetAndNoLatent) {
  const absl::Status s =
      ValidateAndFillSpec(PriorSpec("kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: \"a.h5\" "
                                    "output_model: \"t\" latent_dim: 4 horizon: 10 beta: 0.1"))
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("prior_training.target_dataset: \"\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("prior_training.latent_dim: 4"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("a PRIOR_KIND_ACTION_TRANSLATOR acts every step: use 0 or 1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("prior_training.beta: 0.1"));
  EXPECT_THAT(std::string(ValidateAndFillSpec(
                              PriorSpec("kind: PRIOR_KIND_ACTION_TRANSLATOR dataset: \"a.h5\" "
                                        "target_dataset: \"b.h5\" output_model: \"t\" "
                                        "batch_size: 1"))
                              .status()
                              .message()),
              HasSubstr("prior_training.batch_size: 1"));
}

}  // namespace
}  // namespace prl::learner

namespace prl::learner {
namespace {

TEST(ParrotSpecTest, AParrotSpecIsFilledWithItsDefaults) {
  v1::ExperimentSpec spec = Spec("algorithm", "algorithm { parrot {} } prior { name: 'flow' }");
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_DOUBLE_EQ(filled->algorithm().parrot().latent_bound(), 3.0);
  EXPECT_DOUBLE_EQ(filled->algorithm().parrot().sac().initial_alpha(), 1.0);
  EXPECT_EQ(filled->algorithm().parrot().latent_squash(), v1::ParrotConfig::LATENT_SQUASH_SCALED);
  ExpectIdempotent(spec);
  ExpectIdempotent(Spec("algorithm",
                        "algorithm { parrot { latent_squash: LATENT_SQUASH_UNSCALED } } "
                        "prior { name: 'flow' }"));
  spec = Spec("algorithm", "algorithm { parrot { latent_bound: -1 } } prior { name: 'flow' }");
  EXPECT_THAT(ValidateAndFillSpec(spec).status().message(),
              HasSubstr("algorithm.parrot.latent_bound"));
  spec = Spec("algorithm", "prior { name: 'flow' }");
  spec.mutable_algorithm()->mutable_parrot()->set_latent_squash(
      static_cast<v1::ParrotConfig::LatentSquash>(7));
  EXPECT_THAT(ValidateAndFillSpec(spec).status().message(),
              HasSubstr("algorithm.parrot.latent_squash: 7 is not allowed"));
  // the regulariser: SAC's entropy unless the KL to the base is asked for, with δ = 1
  EXPECT_EQ(filled->algorithm().parrot().regularizer(), v1::ParrotConfig::REGULARIZER_ENTROPY);
  EXPECT_DOUBLE_EQ(filled->algorithm().parrot().target_divergence(), 1.0);
  ExpectIdempotent(Spec("algorithm",
                        "algorithm { parrot { regularizer: REGULARIZER_KL_TO_BASE "
                        "target_divergence: 0.5 } } prior { name: 'flow' }"));
  spec = Spec("algorithm", "algorithm { parrot { target_divergence: -1 } } prior { name: 'flow' }");
  EXPECT_THAT(ValidateAndFillSpec(spec).status().message(),
              HasSubstr("algorithm.parrot.target_divergence: -1"));
  spec = Spec("algorithm", "prior { name: 'flow' }");
  spec.mutable_algorithm()->mutable_parrot()->set_regularizer(
      static_cast<v1::ParrotConfig::Regularizer>(9));
  EXPECT_THAT(ValidateAndFillSpec(spec).status().message(),
              HasSubstr("algorithm.parrot.regularizer: 9 is not allowed"));
}

TEST(SpirlSpecTest, ASpirlSpecIsFilledWithSpirlsDefaultsAndBadFieldsAreNamed) {
  v1::ExperimentSpec spec = Spec("algorithm", "algorithm { spirl {} } prior { name: 'skills' }");
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  ASSERT_TRUE(filled.ok()) << filled.status();
  const v1::SpirlConfig& spirl = filled->algorithm().spirl();
  EXPECT_DOUBLE_EQ(spirl.target_divergence(), 1.0);
  EXPECT_DOUBLE_EQ(spirl.initial_alpha(), 1.0);
  EXPECT_DOUBLE_EQ(spirl.latent_bound(), 2.0);
  EXPECT_EQ(filled->algorithm().warmup_env_steps(), 5000);  // SPiRL's maze warm-up
  ExpectIdempotent(spec);

  spec = Spec("algorithm",
              "algorithm { spirl { kl_samples: 500 horizon: -1 } } "
              "prior { name: 'skills' }");
  absl::Status s = ValidateAndFillSpec(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("algorithm.spirl.kl_samples"));
  EXPECT_THAT(s.message(), HasSubstr("algorithm.spirl.horizon"));
  // the prior is required
  s = ValidateAndFillSpec(Spec("algorithm", "algorithm { spirl {} }")).status();
  EXPECT_THAT(s.message(), HasSubstr("prior"));
}

}  // namespace
}  // namespace prl::learner

namespace prl::learner {
namespace {

v1::ExperimentSpec CollectSpec(const std::string& overlay) {
  v1::ExperimentSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "collect"
        kind: KIND_COLLECT
        env { domain: DOMAIN_POINT_MAZE }
        collect { collector: COLLECTOR_SCRIPTED num_episodes: 10 output_dataset: "maze-planner" }
      )pb",
      &spec));
  EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(overlay, &spec)) << overlay;
  return spec;
}

TEST(CollectSpecTest, APlannerSpecIsFilledAndValidatesToItself) {
  const v1::ExperimentSpec spec = CollectSpec("");
  absl::StatusOr<v1::ExperimentSpec> filled = ValidateAndFillSpec(spec);
  ASSERT_TRUE(filled.ok()) << filled.status();
  EXPECT_EQ(filled->collect().script(), "planner");
  EXPECT_EQ(filled->replay().capacity(), 1000000);
  EXPECT_EQ(filled->resources().num_actors(), 1);
  EXPECT_EQ(filled->resources().envs_per_actor(), 1);
  EXPECT_EQ(filled->env().episode_length(), 2000);  // the domain's default, filled
  ExpectIdempotent(spec);
  // random and policy collectors on any domain; steps instead of episodes
  ExpectIdempotent(CollectSpec(
      "env { domain: DOMAIN_CHEETAH } collect { collector: COLLECTOR_RANDOM num_episodes: 0 "
      "num_env_steps: 5000 action_noise: 0.3 }"));
  ExpectIdempotent(
      CollectSpec("collect { collector: COLLECTOR_POLICY policy { experiment_id: 'exp-000003' } "
                  "randomize_start_goal: true success_only: true }"));
  ExpectIdempotent(CollectSpec(
      "collect { collector: COLLECTOR_POLICY policy { checkpoint_path: '/ckpt/checkpoint.bin' } "
      "}"));
}

TEST(CollectSpecTest, EveryBadFieldIsNamed) {
  struct Case {
    const char* overlay;
    const char* expected;
  } cases[] = {
      {"collect { collector: COLLECTOR_UNSPECIFIED }", "collect.collector: COLLECTOR_UNSPECIFIED"},
      {"collect { script: 'wander' }", "collect.script: \"wander\""},
      {"env { domain: DOMAIN_CHEETAH }", "collect.script: \"\""},
      {"collect { collector: COLLECTOR_RANDOM script: 'planner' }",
       "collect.script: \"planner\" is not allowed; it is for COLLECTOR_SCRIPTED only"},
      {"collect { policy { experiment_id: 'exp-1' } }",
       "collect.policy: set is not allowed; it is for COLLECTOR_POLICY only"},
      {"collect { collector: COLLECTOR_POLICY }", "collect.policy: unset"},
      {"collect { collector: COLLECTOR_POLICY policy { experiment_id: '' } }",
       "collect.policy.experiment_id"},
      {"collect { collector: COLLECTOR_POLICY policy { checkpoint_path: '/c' version: 3 } }",
       "collect.policy.version: 3"},
      {"collect { num_episodes: 0 }", "collect.num_episodes: 0 with collect.num_env_steps 0"},
      {"collect { num_episodes: -1 }", "collect.num_episodes: -1"},
      {"collect { num_env_steps: -5 }", "collect.num_env_steps: -5"},
      {"collect { action_noise: -0.1 }", "collect.action_noise: -0.1"},
      {"collect { action_noise: nan }", "collect.action_noise: nan"},
      {"env { domain: DOMAIN_HOPPER } collect { collector: COLLECTOR_RANDOM "
       "randomize_start_goal: true }",
       "collect.randomize_start_goal: true is not allowed; it is for DOMAIN_POINT_MAZE only"},
      {"collect { output_dataset: 'Maze' }", "collect.output_dataset: \"Maze\""},
      {"collect { output_dataset: '' }", "collect.output_dataset: \"\""},
      {"collect { output_dataset: 'maze.hdf5' }",
       "collect.output_dataset: \"maze.hdf5\" is not allowed; a dataset name must not end in"},
      {"replay { sampler: SAMPLER_UNIFORM }", "replay.sampler: SAMPLER_UNIFORM"},
      {"replay { max_times_sampled: 2 }", "replay.max_times_sampled: 2"},
      {"replay { capacity: -3 }", "replay.capacity: -3"},
      {"resources { envs_per_actor: 5000 }", "resources.envs_per_actor: 5000"},
      {"prior_training { dataset: 'd' }", "prior_training: set with KIND_COLLECT"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.overlay);
    v1::ExperimentSpec spec = CollectSpec(c.overlay);
    const std::vector<std::string> problems = SpecProblems(spec);
    ASSERT_THAT(problems, SizeIs(1));
    EXPECT_THAT(problems[0], HasSubstr(c.expected));
    EXPECT_EQ(ValidateAndFillSpec(spec).status().code(), absl::StatusCode::kInvalidArgument);
  }
  v1::ExperimentSpec no_env = CollectSpec("");
  no_env.clear_env();
  EXPECT_THAT(SpecProblems(no_env), ElementsAre(HasSubstr("env: unset is not allowed; "
                                                          "KIND_COLLECT requires an env")));
  v1::ExperimentSpec no_collect = CollectSpec("");
  no_collect.clear_collect();
  EXPECT_THAT(SpecProblems(no_collect), ElementsAre(HasSubstr("collect: unset")));
}

TEST(CollectSpecTest, TheLearnerChecksItsReplayShards) {
  const v1::ExperimentSpec spec = CollectSpec("replay { num_shards: 3 }");
  EXPECT_EQ(ValidateSpecForLearner(spec, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateSpecForLearner(spec, 3).ok());
}

}  // namespace
}  // namespace prl::learner
