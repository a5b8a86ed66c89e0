#include "learner/spec_validation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "env_desc/env_spec.h"
#include "learner/algorithm_defaults.h"
#include "models/network_spec.h"

namespace prl::learner {
namespace {

using v1::AlgorithmSpec;
using v1::ExperimentSpec;

// limits and defaults from the field comments of proto/experiment.proto; the algorithm and
// algorithm and network defaults and network limits are not here: they come from
// learner/algorithm_defaults.h and models/network_spec.h
constexpr size_t kMaxNameLength = 63;
constexpr char kNameRule[] =
    "use 1-63 characters from [a-z0-9_.-], starting with a lower-case letter";
constexpr size_t kMaxDescriptionBytes = 4096;
constexpr int64_t kMaxPolicyParameters = 12000000;
constexpr int kMaxLabels = 32;
constexpr size_t kMaxLabelValueBytes = 256;
constexpr int64_t kMaxBatchSize = 65536;
// Longest n-step row (the actors' NStepWindows::kMaxSteps).
constexpr int64_t kMaxNStep = 1000;
constexpr int64_t kDefaultWarmupEnvSteps = 10000;
constexpr int64_t kDefaultLatentWarmupEnvSteps = 5000;  // spirl and eap
constexpr int64_t kDefaultCapacity = 1000000;
constexpr int64_t kMaxCapacity = 100000000;
constexpr double kDefaultPriorityExponent = 0.6;
constexpr double kDefaultImportanceSamplingExponent = 0.4;
constexpr double kDefaultErrorBufferFactor = 100;  // x max(1, samples_per_insert)
constexpr int64_t kDefaultMinSizeToSample = 1000;
constexpr int64_t kDefaultActorsOrEnvs = 1;
constexpr int64_t kMaxActorsOrEnvs = 1024;
constexpr int64_t kDefaultEvaluationEveryEnvSteps = 10000;
constexpr int64_t kDefaultEvaluationEpisodes = 10;
constexpr int64_t kMaxEvaluationEpisodes = 10000;
constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();

// strings in messages: quoted, escaped, and cut short when long
std::string Quote(absl::string_view s) {
  constexpr size_t kMaxShown = 64;
  if (s.size() <= kMaxShown) return absl::StrCat("\"", absl::CHexEscape(s), "\"");
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMaxShown)), "...\" (", s.size(),
                      " bytes)");
}

// an enum value by name, or by number when the value is unknown to this build
std::string EnumText(const std::string& name, int number) {
  return name.empty() ? absl::StrCat(number) : name;
}

// a name in the sense of the file comment of experiment.proto
bool IsName(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength || !absl::ascii_islower(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '.' || c == '-';
  });
}

// "", "cpu", "cuda" or "cuda:N"
bool IsDevice(absl::string_view d) {
  if (d.empty() || d == "cpu" || d == "cuda") return true;
  if (!absl::ConsumePrefix(&d, "cuda:") || d.empty()) return false;
  int index = 0;
  return std::all_of(d.begin(), d.end(), [](char c) { return absl::ascii_isdigit(c); }) &&
         absl::SimpleAtoi(d, &index);
}

// The short name of the algorithm a spec picks ("sac", "spirl", ...); "" when none.
std::string AlgorithmName(const AlgorithmSpec& a) {
  if (a.algorithm_case() == AlgorithmSpec::ALGORITHM_NOT_SET) return "";
  return a.GetDescriptor()->FindFieldByNumber(a.algorithm_case())->name();
}

// Checks one spec while building its filled copy. Each Check* method reads `spec_`, appends
// problems and writes resolved values into `filled_`; on a bad value it carries on with the
// default so one mistake is reported once, not again by the fields that depend on it.
// Single-use, not thread-safe (each call of the public functions makes its own).
class SpecChecker {
 public:
  explicit SpecChecker(const ExperimentSpec& spec) : spec_(spec), filled_(spec) {}

  void Run();

  std::vector<std::string>& problems() { return problems_; }
  std::vector<std::string>& unsupported() { return unsupported_; }
  ExperimentSpec& filled() { return filled_; }

 private:
  void Bad(absl::string_view path, absl::string_view value, absl::string_view allowed) {
    problems_.push_back(FieldProblem(path, value, allowed));
  }

  // 0 means `def`; otherwise finite and > 0.
  double Positive(double value, double def, absl::string_view path);
  // 0 means `def`; otherwise in (0, 1].
  double UnitInterval(double value, double def, absl::string_view path);
  // 0 means `def`; otherwise 1..max.
  int64_t Count(int64_t value, int64_t def, int64_t max, absl::string_view path);
  // >= 0, where 0 has its own meaning (no limit, no clipping, ...) and is kept.
  void NotNegative(double value, absl::string_view path, absl::string_view zero_means);

  void CheckCommon();
  void CheckTrain();
  void CheckEnv();
  void CheckAlgorithm();
  void CheckSac(const v1::SacConfig& c, v1::SacConfig* out);
  void CheckTd3(const v1::Td3Config& c, v1::Td3Config* out);
  void CheckSpirl(const v1::SpirlConfig& c, v1::SpirlConfig* out);
  void CheckParrot(const v1::ParrotConfig& c, v1::ParrotConfig* out);
  void CheckEap(const v1::EapConfig& c, v1::EapConfig* out);
  void CheckMcat(const v1::McatConfig& c, v1::McatConfig* out);
  void CheckNetwork(const v1::NetworkSpec& n, v1::NetworkSpec* out);
  void CheckHyperparameters(const AlgorithmSpec& a, AlgorithmSpec* out);
  void CheckPrior();
  void CheckReplayTable();
  void CheckRateLimit();
  void CheckResources();
  void CheckStop();
  void CheckEvaluation();
  void CheckKindParts();
  void CheckPriorTraining();
  void CheckCollect();
  void CheckCollectReplay();
  void CheckCollectPolicy(const v1::CollectSpec& c);
  void CheckEvaluate();
  // A PolicyRef at `path` ("collect.policy", "algorithm.init_from").
  void CheckPolicyRef(const v1::PolicyRef& p, absl::string_view path);
  void CheckInitFrom(const AlgorithmSpec& a);

  const ExperimentSpec& spec_;
  ExperimentSpec filled_;
  std::vector<std::string> problems_;
  std::vector<std::string> unsupported_;
  // resolved values later checks depend on
  const env_desc::DomainInfo* domain_ = nullptr;  // null when env is missing or invalid
  // every algorithm and network default for the spec's algorithm (CheckAlgorithm sets it)
  AlgorithmSpec defaults_;
  int64_t batch_size_ = 0;
  int64_t capacity_ = kDefaultCapacity;
};

double SpecChecker::Positive(double value, double def, absl::string_view path) {
  if (value == 0) return def;
  if (std::isfinite(value) && value > 0) return value;
  Bad(path, absl::StrCat(value),
      absl::StrCat("it must be finite and > 0, or 0 for the default ", def));
  return def;
}

double SpecChecker::UnitInterval(double value, double def, absl::string_view path) {
  if (value == 0) return def;
  if (value > 0 && value <= 1) return value;
  Bad(path, absl::StrCat(value), absl::StrCat("it must be in (0, 1], or 0 for the default ", def));
  return def;
}

int64_t SpecChecker::Count(int64_t value, int64_t def, int64_t max, absl::string_view path) {
  if (value == 0) return def;
  if (value >= 1 && value <= max) return value;
  Bad(path, absl::StrCat(value),
      max == kUnbounded ? absl::StrCat("it must be >= 1, or 0 for the default ", def)
                        : absl::StrCat("use 1..", max, ", or 0 for the default ", def));
  return def;
}

void SpecChecker::NotNegative(double value, absl::string_view path, absl::string_view zero_means) {
  if (std::isfinite(value) && value >= 0) return;
  Bad(path, absl::StrCat(value),
      absl::StrCat("it must be finite and >= 0 (0 means ", zero_means, ")"));
}

void SpecChecker::Run() {
  CheckCommon();
  const ExperimentSpec::Kind kind = spec_.kind();
  if (kind == ExperimentSpec::KIND_TRAIN) {
    CheckTrain();
  } else if (kind == ExperimentSpec::KIND_TRAIN_PRIOR) {
    CheckPriorTraining();
  } else if (kind == ExperimentSpec::KIND_COLLECT) {
    CheckCollect();
  } else if (kind == ExperimentSpec::KIND_EVALUATE) {
    CheckEvaluate();
  } else if (kind != ExperimentSpec::KIND_UNSPECIFIED && ExperimentSpec::Kind_IsValid(kind)) {
    unsupported_.push_back(
        absl::StrCat("kind: ", ExperimentSpec::Kind_Name(kind),
                     " is not supported by this learner yet (KIND_TRAIN, KIND_COLLECT, "
                     "KIND_TRAIN_PRIOR and KIND_EVALUATE are)"));
  }
}

void SpecChecker::CheckCommon() {
  if (!IsName(spec_.name())) Bad("name", Quote(spec_.name()), kNameRule);
  const ExperimentSpec::Kind kind = spec_.kind();
  if (kind == ExperimentSpec::KIND_UNSPECIFIED || !ExperimentSpec::Kind_IsValid(kind)) {
    Bad("kind", EnumText(ExperimentSpec::Kind_Name(kind), kind),
        "use KIND_TRAIN, KIND_COLLECT, KIND_TRAIN_PRIOR or KIND_EVALUATE");
  }
  if (spec_.description().size() > kMaxDescriptionBytes) {
    Bad("description", absl::StrCat(spec_.description().size(), " bytes"),
        absl::StrCat("at most ", kMaxDescriptionBytes, " bytes"));
  }
  if (spec_.labels_size() > kMaxLabels) {
    Bad("labels", absl::StrCat(spec_.labels_size(), " entries"),
        absl::StrCat("at most ", kMaxLabels, " entries"));
  }
  // sorted, so that messages do not depend on map order
  std::vector<std::pair<std::string, std::string>> labels(spec_.labels().begin(),
                                                          spec_.labels().end());
  std::sort(labels.begin(), labels.end());
  for (const auto& [key, value] : labels) {
    const std::string path = absl::StrCat("labels[", Quote(key), "]");
    if (!IsName(key)) Bad(path, absl::StrCat("key ", Quote(key)), kNameRule);
    if (value.size() > kMaxLabelValueBytes) {
      Bad(path, absl::StrCat("a value of ", value.size(), " bytes"),
          absl::StrCat("values are at most ", kMaxLabelValueBytes, " bytes"));
    }
  }
}

void SpecChecker::CheckTrain() {
  CheckEnv();
  CheckAlgorithm();
  CheckPrior();
  CheckReplayTable();
  CheckRateLimit();
  CheckResources();
  CheckStop();
  CheckEvaluation();
  CheckKindParts();
}

void SpecChecker::CheckEnv() {
  if (!spec_.has_env()) {
    Bad("env", "unset", absl::StrCat(ExperimentSpec::Kind_Name(spec_.kind()), " requires an env"));
    return;
  }
  std::vector<std::string> env_problems;
  env_desc::ValidateEnvSpec(spec_.env(), "env", &env_problems);
  if (!env_problems.empty()) {
    problems_.insert(problems_.end(), env_problems.begin(), env_problems.end());
    return;
  }
  absl::StatusOr<env_desc::EnvConfig> config = env_desc::ResolveEnvSpec(spec_.env(), "env");
  if (!config.ok()) {  // not expected: the same checks as env_desc::ValidateEnvSpec
    problems_.push_back(std::string(config.status().message()));
    return;
  }
  env_desc::FillEnvSpecDefaults(*config, filled_.mutable_env());
  domain_ = config->domain;
}

void SpecChecker::CheckAlgorithm() {
  const AlgorithmSpec& a = spec_.algorithm();
  AlgorithmSpec* out = filled_.mutable_algorithm();
  defaults_ = AlgorithmDefaults(a.algorithm_case(), domain_ != nullptr ? domain_->act_dim : 0);
  switch (a.algorithm_case()) {
    case AlgorithmSpec::kSac:
      CheckSac(a.sac(), out->mutable_sac());
      break;
    case AlgorithmSpec::kTd3:
      CheckTd3(a.td3(), out->mutable_td3());
      break;
    case AlgorithmSpec::kSpirl:
      CheckSpirl(a.spirl(), out->mutable_spirl());
      break;
    case AlgorithmSpec::kParrot:
      CheckParrot(a.parrot(), out->mutable_parrot());
      break;
    case AlgorithmSpec::kEap:
      CheckEap(a.eap(), out->mutable_eap());
      break;
    case AlgorithmSpec::kMcat:
      CheckMcat(a.mcat(), out->mutable_mcat());
      break;
    case AlgorithmSpec::ALGORITHM_NOT_SET:
      Bad("algorithm", "unset",
          "KIND_TRAIN requires exactly one of algorithm.sac, algorithm.td3, algorithm.spirl, "
          "algorithm.eap, algorithm.parrot and algorithm.mcat");
      break;
    default:
      unsupported_.push_back(absl::StrCat("algorithm.", AlgorithmName(a),
                                          " is not supported by this learner yet (algorithm.sac, "
                                          "algorithm.td3, algorithm.spirl, algorithm.eap, "
                                          "algorithm.parrot and algorithm.mcat are)"));
      break;
  }
  CheckNetwork(a.network(), out->mutable_network());
  CheckHyperparameters(a, out);
  CheckInitFrom(a);
}

void SpecChecker::CheckSac(const v1::SacConfig& c, v1::SacConfig* out) {
  const v1::SacConfig& def = defaults_.sac();
  out->set_initial_alpha(
      Positive(c.initial_alpha(), def.initial_alpha(), "algorithm.sac.initial_alpha"));
  if (c.has_target_entropy()) {
    if (!std::isfinite(c.target_entropy())) {
      Bad("algorithm.sac.target_entropy", absl::StrCat(c.target_entropy()),
          "it must be finite (unset means -|A|, minus the action dimension)");
    }
  } else if (domain_ != nullptr) {
    out->set_target_entropy(def.target_entropy());  // -|A| of the domain
  }
  out->set_alpha_lr(Positive(c.alpha_lr(), def.alpha_lr(), "algorithm.sac.alpha_lr"));
}

void SpecChecker::CheckSpirl(const v1::SpirlConfig& c, v1::SpirlConfig* out) {
  const v1::SpirlConfig& def = defaults_.spirl();
  out->set_target_divergence(Positive(c.target_divergence(), def.target_divergence(),
                                      "algorithm.spirl.target_divergence"));
  out->set_initial_alpha(
      Positive(c.initial_alpha(), def.initial_alpha(), "algorithm.spirl.initial_alpha"));
  out->set_alpha_lr(Positive(c.alpha_lr(), def.alpha_lr(), "algorithm.spirl.alpha_lr"));
  out->set_latent_bound(
      Positive(c.latent_bound(), def.latent_bound(), "algorithm.spirl.latent_bound"));
  if (c.horizon() < 0 || c.horizon() > 1000) {
    Bad("algorithm.spirl.horizon", absl::StrCat(c.horizon()),
        "use 1..1000 (it must equal the prior's), or 0 for the prior's horizon");
  }
  if (c.kl_samples() < 0 || c.kl_samples() > 100) {
    Bad("algorithm.spirl.kl_samples", absl::StrCat(c.kl_samples()),
        "use 1..100 for a Monte-Carlo estimate, or 0 for the analytic divergence");
  }
}

void SpecChecker::CheckEap(const v1::EapConfig& c, v1::EapConfig* out) {
  const v1::EapConfig& def = defaults_.eap();
  out->set_target_divergence(
      Positive(c.target_divergence(), def.target_divergence(), "algorithm.eap.target_divergence"));
  out->set_initial_alpha(
      Positive(c.initial_alpha(), def.initial_alpha(), "algorithm.eap.initial_alpha"));
  out->set_alpha_lr(Positive(c.alpha_lr(), def.alpha_lr(), "algorithm.eap.alpha_lr"));
  out->set_latent_bound(
      Positive(c.latent_bound(), def.latent_bound(), "algorithm.eap.latent_bound"));
  if (c.horizon() < 0 || c.horizon() > 1000) {
    Bad("algorithm.eap.horizon", absl::StrCat(c.horizon()),
        "use 1..1000 (it must equal the prior's k), or 0 for the prior's horizon");
  }
}

void SpecChecker::CheckMcat(const v1::McatConfig& c, v1::McatConfig* out) {
  const v1::McatConfig& def = defaults_.mcat();
  const std::string p = "algorithm.mcat";
  v1::Td3Config* td3 = out->mutable_td3();
  td3->set_policy_noise(
      Positive(c.td3().policy_noise(), def.td3().policy_noise(), p + ".td3.policy_noise"));
  td3->set_noise_clip(
      Positive(c.td3().noise_clip(), def.td3().noise_clip(), p + ".td3.noise_clip"));
  td3->set_policy_delay(static_cast<int32_t>(Count(c.td3().policy_delay(), def.td3().policy_delay(),
                                                   kUnbounded, p + ".td3.policy_delay")));
  td3->set_exploration_noise(Positive(c.td3().exploration_noise(), def.td3().exploration_noise(),
                                      p + ".td3.exploration_noise"));
  // the tasks: at least two, each a valid dynamics of the env's domain
  if (c.train_tasks_size() < 2) {
    Bad(p + ".train_tasks", absl::StrCat(c.train_tasks_size(), " tasks"),
        "at least 2 training tasks (DynamicsSpec entries), e.g. armature_scale 0.5, 1, 1.5");
  }
  constexpr int kMaxTasks = 64;
  if (c.train_tasks_size() + c.test_tasks_size() > kMaxTasks) {
    Bad(p + ".train_tasks + test_tasks", absl::StrCat(c.train_tasks_size() + c.test_tasks_size()),
        absl::StrCat("at most ", kMaxTasks, " tasks in all"));
  }
  if (spec_.has_env()) {
    const auto check_tasks = [&](const auto& tasks, const std::string& field) {
      for (int i = 0; i < tasks.size(); ++i) {
        v1::EnvSpec env = spec_.env();
        *env.mutable_dynamics() = tasks.Get(i);
        std::vector<std::string> task_problems;
        env_desc::ValidateEnvSpec(env, "env", &task_problems);
        for (const std::string& problem : task_problems) {
          // name the task, not the env: "algorithm.mcat.train_tasks[1].armature_scale: ..."
          std::string message = problem;
          const std::string prefix = "env.dynamics";
          if (absl::StartsWith(message, prefix)) {
            message = absl::StrCat(field, "[", i, "]", message.substr(prefix.size()));
          } else if (absl::StrContains(message, "dynamics")) {
            message = absl::StrCat(field, "[", i, "]: ", message);
          } else {
            continue;  // a problem of the env itself, reported by CheckEnv
          }
          problems_.push_back(message);
        }
      }
    };
    check_tasks(c.train_tasks(), p + ".train_tasks");
    check_tasks(c.test_tasks(), p + ".test_tasks");
  }
  out->set_context_history(static_cast<int32_t>(
      Count(c.context_history(), def.context_history(), 100, p + ".context_history")));
  out->set_prediction_horizon(static_cast<int32_t>(
      Count(c.prediction_horizon(), def.prediction_horizon(), 100, p + ".prediction_horizon")));
  out->set_context_dim(
      static_cast<int32_t>(Count(c.context_dim(), def.context_dim(), 256, p + ".context_dim")));
  out->set_contrastive_margin(
      Positive(c.contrastive_margin(), def.contrastive_margin(), p + ".contrastive_margin"));
  out->set_contrastive_weight(
      Positive(c.contrastive_weight(), def.contrastive_weight(), p + ".contrastive_weight"));
  out->set_model_lr(Positive(c.model_lr(), def.model_lr(), p + ".model_lr"));
  out->set_translator_lr(Positive(c.translator_lr(), def.translator_lr(), p + ".translator_lr"));
  out->set_transfer_window_episodes(
      static_cast<int32_t>(Count(c.transfer_window_episodes(), def.transfer_window_episodes(),
                                 10000, p + ".transfer_window_episodes")));
  out->set_self_imitation_weight(Positive(c.self_imitation_weight(), def.self_imitation_weight(),
                                          p + ".self_imitation_weight"));
  out->set_self_imitation_capacity(Count(c.self_imitation_capacity(), def.self_imitation_capacity(),
                                         100000000, p + ".self_imitation_capacity"));
  out->set_self_imitation_priority_exponent(Positive(c.self_imitation_priority_exponent(),
                                                     def.self_imitation_priority_exponent(),
                                                     p + ".self_imitation_priority_exponent"));
  out->set_self_imitation_importance_exponent(
      UnitInterval(c.self_imitation_importance_exponent(), def.self_imitation_importance_exponent(),
                   p + ".self_imitation_importance_exponent"));
}

void SpecChecker::CheckParrot(const v1::ParrotConfig& c, v1::ParrotConfig* out) {
  const v1::ParrotConfig& def = defaults_.parrot();
  v1::SacConfig* sac = out->mutable_sac();
  sac->set_initial_alpha(Positive(c.sac().initial_alpha(), def.sac().initial_alpha(),
                                  "algorithm.parrot.sac.initial_alpha"));
  sac->set_alpha_lr(
      Positive(c.sac().alpha_lr(), def.sac().alpha_lr(), "algorithm.parrot.sac.alpha_lr"));
  if (c.sac().has_target_entropy()) {
    if (!std::isfinite(c.sac().target_entropy())) {
      Bad("algorithm.parrot.sac.target_entropy", absl::StrCat(c.sac().target_entropy()),
          "it must be finite (unset means minus the action dimension)");
    }
  } else if (domain_ != nullptr) {
    sac->set_target_entropy(def.sac().target_entropy());
  }
  out->set_latent_bound(
      Positive(c.latent_bound(), def.latent_bound(), "algorithm.parrot.latent_bound"));
  if (c.latent_squash() == v1::ParrotConfig::LATENT_SQUASH_UNSPECIFIED) {
    out->set_latent_squash(v1::ParrotConfig::LATENT_SQUASH_SCALED);
  } else if (!v1::ParrotConfig::LatentSquash_IsValid(c.latent_squash())) {
    Bad("algorithm.parrot.latent_squash", EnumText("", c.latent_squash()),
        "use LATENT_SQUASH_SCALED or LATENT_SQUASH_UNSCALED");
  }
  if (c.regularizer() == v1::ParrotConfig::REGULARIZER_UNSPECIFIED) {
    out->set_regularizer(v1::ParrotConfig::REGULARIZER_ENTROPY);
  } else if (!v1::ParrotConfig::Regularizer_IsValid(c.regularizer())) {
    Bad("algorithm.parrot.regularizer", EnumText("", c.regularizer()),
        "use REGULARIZER_ENTROPY or REGULARIZER_KL_TO_BASE");
  }
  out->set_target_divergence(Positive(c.target_divergence(), def.target_divergence(),
                                      "algorithm.parrot.target_divergence"));
}

void SpecChecker::CheckTd3(const v1::Td3Config& c, v1::Td3Config* out) {
  const v1::Td3Config& def = defaults_.td3();
  out->set_policy_noise(
      Positive(c.policy_noise(), def.policy_noise(), "algorithm.td3.policy_noise"));
  out->set_noise_clip(Positive(c.noise_clip(), def.noise_clip(), "algorithm.td3.noise_clip"));
  out->set_policy_delay(static_cast<int32_t>(
      Count(c.policy_delay(), def.policy_delay(), kUnbounded, "algorithm.td3.policy_delay")));
  out->set_exploration_noise(
      Positive(c.exploration_noise(), def.exploration_noise(), "algorithm.td3.exploration_noise"));
}

void SpecChecker::CheckNetwork(const v1::NetworkSpec& n, v1::NetworkSpec* out) {
  const std::string path = "algorithm.network";
  if (n.hidden_sizes_size() > models::kMaxHiddenLayers) {
    Bad(path + ".hidden_sizes", absl::StrCat(n.hidden_sizes_size(), " layers"),
        absl::StrCat("at most ", models::kMaxHiddenLayers, " hidden layers"));
  }
  for (int i = 0; i < n.hidden_sizes_size(); ++i) {
    const int width = n.hidden_sizes(i);
    if (width < 1 || width > models::kMaxHiddenSize) {
      Bad(absl::StrCat(path, ".hidden_sizes[", i, "]"), absl::StrCat(width),
          absl::StrCat("each hidden layer is 1..", models::kMaxHiddenSize, " wide"));
    }
  }
  // the defaults are models::ResolveNetworkSpec's, through AlgorithmDefaults
  const v1::NetworkSpec& def = defaults_.network();
  if (n.hidden_sizes().empty()) *out->mutable_hidden_sizes() = def.hidden_sizes();
  // A policy travels to the actors whole, in one gRPC message of at most 64 MiB, and a
  // checkpoint (policy, critics, targets, Adam's moments: about 11 policies) is one protobuf
  // of at most 2 GiB: bound the policy's parameters (input and output layers counted where the
  // env is known).
  int64_t parameters = 0;
  int64_t in = domain_ != nullptr ? domain_->obs_dim : 0;
  bool widths_ok = true;
  for (const int width : out->hidden_sizes()) {
    widths_ok = widths_ok && width >= 1 && width <= models::kMaxHiddenSize;
    parameters += (in + 1) * width;
    in = width;
  }
  if (domain_ != nullptr) parameters += (in + 1) * 2 * domain_->act_dim;
  if (widths_ok && parameters > kMaxPolicyParameters) {
    Bad(path + ".hidden_sizes",
        absl::StrCat("[", absl::StrJoin(out->hidden_sizes(), ", "), "] (", parameters,
                     " policy parameters)"),
        absl::StrCat("at most ", kMaxPolicyParameters, " parameters (",
                     kMaxPolicyParameters * 4 / 1000000,
                     " MB of float32) fit: a policy travels to the actors in one message of at "
                     "most 64 MiB"));
  }
  const v1::NetworkSpec::Activation activation = n.activation();
  if (activation == v1::NetworkSpec::ACTIVATION_UNSPECIFIED) {
    out->set_activation(def.activation());
  } else if (!v1::NetworkSpec::Activation_IsValid(activation)) {
    Bad(path + ".activation", absl::StrCat(activation),
        absl::StrCat("use ACTIVATION_RELU, ACTIVATION_TANH, ACTIVATION_ELU, ACTIVATION_LEAKY_RELU "
                     "or ACTIVATION_SILU, or ACTIVATION_UNSPECIFIED for ",
                     v1::NetworkSpec::Activation_Name(def.activation())));
  }
}

void SpecChecker::CheckHyperparameters(const AlgorithmSpec& a, AlgorithmSpec* out) {
  const AlgorithmSpec& def = defaults_;
  out->set_discount(UnitInterval(a.discount(), def.discount(), "algorithm.discount"));
  out->set_tau(UnitInterval(a.tau(), def.tau(), "algorithm.tau"));
  out->set_target_update_period(
      static_cast<int32_t>(Count(a.target_update_period(), def.target_update_period(), kUnbounded,
                                 "algorithm.target_update_period")));
  batch_size_ = Count(a.batch_size(), def.batch_size(), kMaxBatchSize, "algorithm.batch_size");
  out->set_batch_size(static_cast<int32_t>(batch_size_));
  out->set_actor_lr(Positive(a.actor_lr(), def.actor_lr(), "algorithm.actor_lr"));
  out->set_critic_lr(Positive(a.critic_lr(), def.critic_lr(), "algorithm.critic_lr"));
  if (!std::isfinite(a.reward_scale())) {
    Bad("algorithm.reward_scale", absl::StrCat(a.reward_scale()),
        absl::StrCat("it must be finite and non-zero, or 0 for the default ", def.reward_scale()));
  }
  out->set_reward_scale(a.reward_scale() == 0 || !std::isfinite(a.reward_scale())
                            ? def.reward_scale()
                            : a.reward_scale());
  NotNegative(a.max_grad_norm(), "algorithm.max_grad_norm", "no clipping");
  const int64_t n_step = Count(a.n_step(), def.n_step(), kMaxNStep, "algorithm.n_step");
  out->set_n_step(static_cast<int32_t>(n_step));
  const bool one_step_decisions = a.algorithm_case() == AlgorithmSpec::kSac ||
                                  a.algorithm_case() == AlgorithmSpec::kTd3 ||
                                  a.algorithm_case() == AlgorithmSpec::kParrot;
  if (n_step > 1 && !one_step_decisions && a.algorithm_case() != AlgorithmSpec::ALGORITHM_NOT_SET) {
    Bad("algorithm.n_step", absl::StrCat(n_step),
        absl::StrCat(AlgorithmName(a),
                     a.algorithm_case() == AlgorithmSpec::kMcat
                         ? " stores single steps (its histories and "
                           "self-imitation returns need them)"
                         : "'s decisions already span the prior's horizon",
                     ", so use 0 or 1 (n_step is for sac, td3 and parrot)"));
  }

  // warm-up: 0 is the algorithm's default, any negative value is stored as -1 (none)
  const bool latent =
      a.algorithm_case() == AlgorithmSpec::kSpirl || a.algorithm_case() == AlgorithmSpec::kEap;
  if (a.warmup_env_steps() == 0) {
    out->set_warmup_env_steps(latent ? kDefaultLatentWarmupEnvSteps : kDefaultWarmupEnvSteps);
  } else if (a.warmup_env_steps() < 0) {
    out->set_warmup_env_steps(-1);
  }
  if (a.seed() == 0) out->set_seed(spec_.env().seed());
}

void SpecChecker::CheckPrior() {
  const AlgorithmSpec::AlgorithmCase algorithm = spec_.algorithm().algorithm_case();
  if (algorithm == AlgorithmSpec::ALGORITHM_NOT_SET) return;  // reported by CheckAlgorithm
  const std::string name = AlgorithmName(spec_.algorithm());
  const bool needs_prior = algorithm == AlgorithmSpec::kSpirl || algorithm == AlgorithmSpec::kEap ||
                           algorithm == AlgorithmSpec::kParrot;
  const v1::PriorRef& prior = spec_.prior();
  if (!needs_prior) {
    if (spec_.has_prior()) {
      Bad("prior", absl::StrCat(Quote(prior.name()), " (version ", prior.version(), ")"),
          absl::StrCat(name, " uses no prior, leave prior unset"));
    }
    return;
  }
  if (!spec_.has_prior()) {
    Bad("prior", "unset", absl::StrCat(name, " requires a prior model"));
    return;
  }
  if (!IsName(prior.name())) Bad("prior.name", Quote(prior.name()), kNameRule);
  if (prior.version() < 0) {
    Bad("prior.version", absl::StrCat(prior.version()),
        "use a version >= 1, or 0 for the latest when the experiment starts");
  }
}

void SpecChecker::CheckReplayTable() {
  const v1::ReplaySpec& r = spec_.replay();
  v1::ReplaySpec* out = filled_.mutable_replay();
  capacity_ = r.capacity() == 0 ? kDefaultCapacity : r.capacity();
  if (capacity_ < batch_size_ || capacity_ > kMaxCapacity) {
    Bad("replay.capacity", absl::StrCat(capacity_),
        absl::StrCat("use algorithm.batch_size (", batch_size_, ")..", kMaxCapacity,
                     ", or 0 for the default ", kDefaultCapacity));
    capacity_ = kMaxCapacity;  // checks below then blame their own fields only
  }
  out->set_capacity(r.capacity() == 0 ? kDefaultCapacity : r.capacity());

  v1::Sampler sampler = r.sampler();
  if (sampler == v1::SAMPLER_UNSPECIFIED) {
    sampler = v1::SAMPLER_UNIFORM;
    out->set_sampler(sampler);
  } else if (!v1::Sampler_IsValid(sampler)) {
    Bad("replay.sampler", absl::StrCat(sampler),
        "use SAMPLER_UNIFORM, SAMPLER_PRIORITIZED, SAMPLER_FIFO or SAMPLER_LIFO, "
        "or SAMPLER_UNSPECIFIED for SAMPLER_UNIFORM");
  }

  // the exponents are PRIORITIZED only: filled then, and must stay 0 otherwise
  if (sampler == v1::SAMPLER_PRIORITIZED) {
    out->set_priority_exponent(
        Positive(r.priority_exponent(), kDefaultPriorityExponent, "replay.priority_exponent"));
    out->set_importance_sampling_exponent(Positive(r.importance_sampling_exponent(),
                                                   kDefaultImportanceSamplingExponent,
                                                   "replay.importance_sampling_exponent"));
  } else {
    const std::string unused = absl::StrCat("only SAMPLER_PRIORITIZED uses it, leave it 0 with ",
                                            EnumText(v1::Sampler_Name(sampler), sampler));
    if (r.priority_exponent() != 0) {
      Bad("replay.priority_exponent", absl::StrCat(r.priority_exponent()), unused);
    }
    if (r.importance_sampling_exponent() != 0) {
      Bad("replay.importance_sampling_exponent", absl::StrCat(r.importance_sampling_exponent()),
          unused);
    }
  }
  if (r.max_times_sampled() < 0) {
    Bad("replay.max_times_sampled", absl::StrCat(r.max_times_sampled()),
        "it must be >= 0 (0 means unlimited)");
  }
  if (r.num_shards() < 0) {
    Bad("replay.num_shards", absl::StrCat(r.num_shards()),
        "it must be >= 0 (0 means every shard the learner is configured with)");
  }
}

void SpecChecker::CheckRateLimit() {
  const v1::ReplaySpec& r = spec_.replay();
  v1::ReplaySpec* out = filled_.mutable_replay();

  // samples per insert: 0 is the batch size, any negative value is stored as -1 (no limit)
  double spi = r.samples_per_insert();
  if (!std::isfinite(spi)) {
    Bad("replay.samples_per_insert", absl::StrCat(spi),
        "it must be finite: > 0, 0 for algorithm.batch_size, or negative for no ratio limit");
    spi = static_cast<double>(batch_size_);
  } else if (spi == 0) {
    spi = static_cast<double>(batch_size_);
  } else if (spi < 0) {
    spi = -1;
  }
  out->set_samples_per_insert(spi);

  // error buffer: bounded below by the ratio only while there is one
  const double eb = r.error_buffer();
  const double default_eb = kDefaultErrorBufferFactor * std::max(1.0, spi);
  const double min_eb = spi > 0 ? std::max(1.0, spi) : 0.0;
  if (eb == 0) {
    out->set_error_buffer(default_eb);
  } else if (!std::isfinite(eb) || eb < min_eb) {
    Bad("replay.error_buffer", absl::StrCat(eb),
        absl::StrCat(
            "it must be finite and >= ", spi > 0 ? "max(1, replay.samples_per_insert) = " : "",
            min_eb, ", or 0 for the default ", kDefaultErrorBufferFactor,
            " x max(1, replay.samples_per_insert) = ", default_eb));
  }

  const int64_t min_size = r.min_size_to_sample() == 0
                               ? std::max(kDefaultMinSizeToSample, batch_size_)
                               : r.min_size_to_sample();
  if (min_size < 0 || min_size > capacity_) {
    Bad("replay.min_size_to_sample",
        r.min_size_to_sample() == 0 ? absl::StrCat(min_size, " (the default for 0)")
                                    : absl::StrCat(min_size),
        absl::StrCat("use 1..replay.capacity (", capacity_,
                     "), or 0 for max(1000, algorithm.batch_size)"));
  }
  out->set_min_size_to_sample(min_size);
}

void SpecChecker::CheckResources() {
  const v1::Resources& r = spec_.resources();
  v1::Resources* out = filled_.mutable_resources();
  out->set_num_actors(static_cast<int32_t>(
      Count(r.num_actors(), kDefaultActorsOrEnvs, kMaxActorsOrEnvs, "resources.num_actors")));
  out->set_envs_per_actor(static_cast<int32_t>(Count(
      r.envs_per_actor(), kDefaultActorsOrEnvs, kMaxActorsOrEnvs, "resources.envs_per_actor")));
  if (!IsDevice(r.learner_device())) {
    Bad("resources.learner_device", Quote(r.learner_device()),
        "use \"\" (CUDA when available, CPU otherwise), \"cpu\", \"cuda\" or \"cuda:N\"");
  }
}

void SpecChecker::CheckStop() {
  const v1::StopCondition& s = spec_.stop();
  const std::pair<const char*, int64_t> limits[] = {
      {"stop.max_env_steps", s.max_env_steps()},
      {"stop.max_updates", s.max_updates()},
      {"stop.max_wall_time_seconds", s.max_wall_time_seconds()},
  };
  bool any_set = false;
  for (const auto& [path, value] : limits) {
    if (value < 0) Bad(path, absl::StrCat(value), "it must be >= 0 (0 means no limit)");
    any_set = any_set || value != 0;
  }
  if (!any_set) {
    Bad("stop", spec_.has_stop() ? "no limit" : "unset",
        "KIND_TRAIN needs at least one of stop.max_env_steps, stop.max_updates and "
        "stop.max_wall_time_seconds > 0");
  }
  if (s.has_target_return() && !std::isfinite(s.target_return())) {
    Bad("stop.target_return", absl::StrCat(s.target_return()),
        "it must be finite (unset means no return target)");
  }
}

void SpecChecker::CheckEvaluation() {
  const v1::EvaluationSpec& e = spec_.evaluation();
  v1::EvaluationSpec* out = filled_.mutable_evaluation();
  out->set_every_env_steps(Count(e.every_env_steps(), kDefaultEvaluationEveryEnvSteps, kUnbounded,
                                 "evaluation.every_env_steps"));
  out->set_episodes(static_cast<int32_t>(Count(e.episodes(), kDefaultEvaluationEpisodes,
                                               kMaxEvaluationEpisodes, "evaluation.episodes")));
}

void SpecChecker::CheckKindParts() {
  struct Part {
    const char* field;
    bool set;
    const char* kind;
  };
  const Part parts[] = {
      {"collect", spec_.has_collect(), "KIND_COLLECT"},
      {"prior_training", spec_.has_prior_training(), "KIND_TRAIN_PRIOR"},
      {"evaluate", spec_.has_evaluate(), "KIND_EVALUATE"},
  };
  const std::string kind = ExperimentSpec::Kind_Name(spec_.kind());
  for (const Part& part : parts) {
    if (!part.set || part.kind == kind) continue;
    Bad(part.field, absl::StrCat("set with ", kind),
        absl::StrCat("it is for ", part.kind, " only, leave it unset"));
  }
}

// The defaults of PriorTrainingSpec (proto/experiment.proto: SPiRL's and PARROT's values),
// written here only: a TRAIN_PRIOR run builds its model from the filled spec.
constexpr int kSkillHorizon = 10;
constexpr int kSkillLatent = 10;
constexpr int kCvaeHorizon = 1;
constexpr double kSkillBeta = 1e-2;
constexpr int kSkillHiddenLayers = 5;
constexpr int kSkillHiddenSize = 128;
constexpr int kSkillEpochs = 200;
constexpr double kSkillLr = 1e-3;
constexpr int kFlowCouplingLayers = 4;
constexpr int64_t kFlowMaxSteps = 500000;
constexpr double kFlowLr = 1e-4;
constexpr int kTranslatorEpochs = 100;
constexpr double kTranslatorLr = 3e-4;
constexpr int kPriorBatchSize = 128;
constexpr int kMaxPriorHorizon = 1000;
constexpr int kMaxLatentDim = 1024;
constexpr int kMaxCouplingLayers = 32;

void SpecChecker::CheckPriorTraining() {
  CheckKindParts();
  if (!spec_.has_prior_training()) {
    Bad("prior_training", "unset", "KIND_TRAIN_PRIOR requires prior_training");
    return;
  }
  const v1::PriorTrainingSpec& p = spec_.prior_training();
  v1::PriorTrainingSpec* out = filled_.mutable_prior_training();
  const std::string path = "prior_training";
  const v1::PriorKind kind = p.kind();
  const bool skill = kind == v1::PRIOR_KIND_SKILL_VAE;
  const bool flow = kind == v1::PRIOR_KIND_REAL_NVP_FLOW;
  const bool cvae = kind == v1::PRIOR_KIND_CVAE;
  const bool translator = kind == v1::PRIOR_KIND_ACTION_TRANSLATOR;
  if (!skill && !flow && !cvae && !translator) {
    Bad(path + ".kind", EnumText(v1::PriorKind_Name(kind), kind),
        "use PRIOR_KIND_SKILL_VAE, PRIOR_KIND_CVAE, PRIOR_KIND_REAL_NVP_FLOW or "
        "PRIOR_KIND_ACTION_TRANSLATOR (PRIOR_KIND_TORCHSCRIPT models are imported with "
        "LoadModel, not trained)");
  }
  if (p.dataset().empty()) {
    Bad(path + ".dataset", "\"\"", "name a dataset or a D4RL-layout .hdf5/.h5 file");
  }
  if (!p.target_dataset().empty() && !translator) {
    Bad(path + ".target_dataset", Quote(p.target_dataset()),
        "it is for PRIOR_KIND_ACTION_TRANSLATOR only, leave it empty");
  }
  if (p.target_dataset().empty() && translator) {
    Bad(path + ".target_dataset", "\"\"",
        "a PRIOR_KIND_ACTION_TRANSLATOR translates from `dataset`'s task to this one's: name a "
        "dataset or a D4RL-layout .hdf5/.h5 file");
  }
  if (!IsName(p.output_model())) Bad(path + ".output_model", Quote(p.output_model()), kNameRule);
  if (flow || translator) {
    const std::string name = v1::PriorKind_Name(kind);
    if (p.horizon() != 0 && p.horizon() != 1) {
      Bad(path + ".horizon", absl::StrCat(p.horizon()),
          absl::StrCat("a ", name, " acts every step: use 0 or 1"));
    }
    out->set_horizon(1);
    if (p.beta() != 0) {
      Bad(path + ".beta", absl::StrCat(p.beta()), "it is for SKILL_VAE and CVAE: leave it 0");
    }
  }
  if (translator) {
    if (p.latent_dim() != 0) {
      Bad(path + ".latent_dim", absl::StrCat(p.latent_dim()),
          "a PRIOR_KIND_ACTION_TRANSLATOR between two tasks has no latent: leave it 0");
    }
    if (p.num_coupling_layers() != 0) {
      Bad(path + ".num_coupling_layers", absl::StrCat(p.num_coupling_layers()),
          "it is for PRIOR_KIND_REAL_NVP_FLOW only: leave it 0");
    }
  } else if (flow) {
    if (p.num_coupling_layers() == 1) {
      Bad(path + ".num_coupling_layers", "1",
          absl::StrCat("use 2..", kMaxCouplingLayers,
                       " (alternating masks need two layers to transform every dimension), or "
                       "0 for the default ",
                       kFlowCouplingLayers));
    } else {
      out->set_num_coupling_layers(
          static_cast<int32_t>(Count(p.num_coupling_layers(), kFlowCouplingLayers,
                                     kMaxCouplingLayers, path + ".num_coupling_layers")));
    }
    // latent_dim must be 0 or the action dimension: the run checks it against the dataset
    if (p.latent_dim() < 0) {
      Bad(path + ".latent_dim", absl::StrCat(p.latent_dim()),
          "use 0 (the action dimension) or the action dimension");
    }
  } else {
    // a CVAE's k defaults to 1 (the latent-SAC generator); EAP sets k > 1
    out->set_horizon(static_cast<int32_t>(Count(p.horizon(), cvae ? kCvaeHorizon : kSkillHorizon,
                                                kMaxPriorHorizon, path + ".horizon")));
    out->set_latent_dim(static_cast<int32_t>(
        Count(p.latent_dim(), kSkillLatent, kMaxLatentDim, path + ".latent_dim")));
    out->set_beta(Positive(p.beta(), kSkillBeta, path + ".beta"));
    if (p.num_coupling_layers() != 0) {
      Bad(path + ".num_coupling_layers", absl::StrCat(p.num_coupling_layers()),
          "it is for PRIOR_KIND_REAL_NVP_FLOW only: leave it 0");
    }
  }
  v1::NetworkSpec* network = out->mutable_network();
  if (network->hidden_sizes().empty() && (skill || cvae)) {
    for (int i = 0; i < kSkillHiddenLayers; ++i) network->add_hidden_sizes(kSkillHiddenSize);
  }
  if (absl::Status s = models::ResolveNetworkSpec(path + ".network", network); !s.ok()) {
    problems_.push_back(std::string(s.message()));
  }
  if (p.epochs() < 0) {
    Bad(path + ".epochs", absl::StrCat(p.epochs()), "it must be >= 0");
  }
  if (p.max_steps() < 0) {
    Bad(path + ".max_steps", absl::StrCat(p.max_steps()), "it must be >= 0");
  }
  if (p.epochs() == 0 && p.max_steps() == 0) {
    if (flow) {
      out->set_max_steps(kFlowMaxSteps);
    } else {
      out->set_epochs(translator ? kTranslatorEpochs : kSkillEpochs);
    }
  }
  out->set_batch_size(static_cast<int32_t>(
      Count(p.batch_size(), kPriorBatchSize, kMaxBatchSize, path + ".batch_size")));
  if (translator && p.batch_size() == 1) {
    Bad(path + ".batch_size", "1",
        "a PRIOR_KIND_ACTION_TRANSLATOR batch holds both tasks half and half: use 2 or more, or 0 "
        "for the default");
  }
  out->set_lr(Positive(p.lr(),
                       flow         ? kFlowLr
                       : translator ? kTranslatorLr
                                    : kSkillLr,
                       path + ".lr"));
}

// COLLECT: the collector and its limits (proto/experiment.proto, CollectSpec). Only env,
// resources, replay.capacity and replay.num_shards apply besides collect; the other parts of a
// spec are ignored, as for the other kinds that do not train.
void SpecChecker::CheckCollect() {
  CheckEnv();
  CheckKindParts();
  CheckResources();
  CheckCollectReplay();
  if (!spec_.has_collect()) {
    Bad("collect", "unset", "KIND_COLLECT requires collect");
    return;
  }
  const v1::CollectSpec& c = spec_.collect();
  v1::CollectSpec* out = filled_.mutable_collect();
  const bool maze = spec_.env().domain() == v1::EnvSpec::DOMAIN_POINT_MAZE;
  const std::string domain = v1::EnvSpec::Domain_Name(spec_.env().domain());
  const v1::CollectSpec::Collector collector = c.collector();
  if (collector == v1::CollectSpec::COLLECTOR_UNSPECIFIED ||
      !v1::CollectSpec::Collector_IsValid(collector)) {
    Bad("collect.collector", EnumText(v1::CollectSpec::Collector_Name(collector), collector),
        "use COLLECTOR_SCRIPTED, COLLECTOR_RANDOM or COLLECTOR_POLICY");
  }
  // script: SCRIPTED only, and a script the domain has
  // (what depends on the domain is left alone while env itself is invalid: reported there)
  if (collector == v1::CollectSpec::COLLECTOR_SCRIPTED && domain_ != nullptr) {
    if (c.script().empty() && maze) {
      out->set_script("planner");
    } else if (c.script().empty()) {
      Bad("collect.script", "\"\"",
          absl::StrCat(domain,
                       " has no scripted collector yet; use COLLECTOR_RANDOM or "
                       "COLLECTOR_POLICY"));
    } else if (c.script() != "planner" || !maze) {
      Bad("collect.script", Quote(c.script()),
          absl::StrCat("the scripted collectors are \"planner\" (DOMAIN_POINT_MAZE only)",
                       maze ? "" : absl::StrCat("; ", domain, " has none yet")));
    }
  } else if (collector != v1::CollectSpec::COLLECTOR_SCRIPTED && !c.script().empty()) {
    Bad("collect.script", Quote(c.script()), "it is for COLLECTOR_SCRIPTED only, leave it empty");
  }
  CheckCollectPolicy(c);
  // limits: at least one
  if (c.num_episodes() < 0) {
    Bad("collect.num_episodes", absl::StrCat(c.num_episodes()),
        "it must be >= 0 (0 means no episode limit)");
  }
  if (c.num_env_steps() < 0) {
    Bad("collect.num_env_steps", absl::StrCat(c.num_env_steps()),
        "it must be >= 0 (0 means no step limit)");
  }
  if (c.num_episodes() == 0 && c.num_env_steps() == 0) {
    Bad("collect.num_episodes", "0 with collect.num_env_steps 0",
        "KIND_COLLECT needs at least one of collect.num_episodes and collect.num_env_steps > 0");
  }
  NotNegative(c.action_noise(), "collect.action_noise", "no noise");
  if (c.randomize_start_goal() && domain_ != nullptr && !maze) {
    Bad("collect.randomize_start_goal", "true",
        absl::StrCat("it is for DOMAIN_POINT_MAZE only (env.domain is ", domain, ")"));
  }
  const std::string& name = c.output_dataset();
  if (!IsName(name)) {
    Bad("collect.output_dataset", Quote(name), kNameRule);
  } else if (absl::EndsWith(name, ".hdf5") || absl::EndsWith(name, ".h5")) {
    Bad("collect.output_dataset", Quote(name),
        "a dataset name must not end in .hdf5 or .h5 (prior_training.dataset reads such a "
        "value as a file path)");
  }
}

void SpecChecker::CheckCollectPolicy(const v1::CollectSpec& c) {
  const bool policy = c.collector() == v1::CollectSpec::COLLECTOR_POLICY;
  if (!policy) {
    if (c.has_policy()) {
      Bad("collect.policy", "set", "it is for COLLECTOR_POLICY only, leave it unset");
    }
    return;
  }
  if (!c.has_policy()) {
    Bad("collect.policy", "unset",
        "COLLECTOR_POLICY requires collect.policy.experiment_id or "
        "collect.policy.checkpoint_path");
    return;
  }
  CheckPolicyRef(c.policy(), "collect.policy");
}

// EVALUATE: the policy and the number of episodes. Only env and resources apply besides
// evaluate; the other parts of a spec are ignored, as for the other kinds that do not train.
void SpecChecker::CheckEvaluate() {
  CheckEnv();
  CheckKindParts();
  CheckResources();
  if (!spec_.has_evaluate()) {
    Bad("evaluate", "unset", "KIND_EVALUATE requires evaluate");
    return;
  }
  const v1::EvaluateSpec& e = spec_.evaluate();
  if (!e.has_policy()) {
    Bad("evaluate.policy", "unset",
        "KIND_EVALUATE requires evaluate.policy.experiment_id or "
        "evaluate.policy.checkpoint_path");
  } else {
    CheckPolicyRef(e.policy(), "evaluate.policy");
  }
  if (e.has_translator()) {
    if (!IsName(e.translator().name())) {
      Bad("evaluate.translator.name", Quote(e.translator().name()), kNameRule);
    }
    if (e.translator().version() < 0) {
      Bad("evaluate.translator.version", absl::StrCat(e.translator().version()),
          "use a version >= 1, or 0 for the latest");
    }
  }
  filled_.mutable_evaluate()->set_episodes(static_cast<int32_t>(Count(
      e.episodes(), kDefaultEvaluationEpisodes, kMaxEvaluationEpisodes, "evaluate.episodes")));
}

void SpecChecker::CheckPolicyRef(const v1::PolicyRef& p, absl::string_view path) {
  switch (p.source_case()) {
    case v1::PolicyRef::kExperimentId:
      if (p.experiment_id().empty()) {
        Bad(absl::StrCat(path, ".experiment_id"), "\"\"",
            "name a TRAIN experiment of this learner");
      }
      if (p.version() < 0) {
        Bad(absl::StrCat(path, ".version"), absl::StrCat(p.version()),
            "use a version >= 1, or 0 for the latest");
      }
      break;
    case v1::PolicyRef::kCheckpointPath:
      if (p.checkpoint_path().empty()) {
        Bad(absl::StrCat(path, ".checkpoint_path"), "\"\"",
            "name a learner checkpoint file (experiments/<id>/checkpoint.bin)");
      }
      if (p.version() != 0) {
        Bad(absl::StrCat(path, ".version"), absl::StrCat(p.version()),
            absl::StrCat("a checkpoint holds one policy: leave it 0 with ", path,
                         ".checkpoint_path"));
      }
      break;
    default:
      Bad(path, "no source",
          absl::StrCat("set ", path, ".experiment_id or ", path, ".checkpoint_path"));
  }
}

void SpecChecker::CheckInitFrom(const AlgorithmSpec& a) {
  if (!a.has_init_from()) return;
  if (a.algorithm_case() != AlgorithmSpec::kSac && a.algorithm_case() != AlgorithmSpec::kTd3) {
    Bad("algorithm.init_from", "set",
        absl::StrCat("fine-tuning is for algorithm.sac and algorithm.td3, not algorithm.",
                     AlgorithmName(a)));
    return;
  }
  CheckPolicyRef(a.init_from(), "algorithm.init_from");
}

// COLLECT's staging table on the replay shards is a FIFO queue each row leaves once: only its
// capacity and the shards it spreads over are the user's to choose.
void SpecChecker::CheckCollectReplay() {
  const v1::ReplaySpec& r = spec_.replay();
  v1::ReplaySpec* out = filled_.mutable_replay();
  if (r.capacity() == 0) {
    out->set_capacity(kDefaultCapacity);
  } else if (r.capacity() < 1 || r.capacity() > kMaxCapacity) {
    Bad("replay.capacity", absl::StrCat(r.capacity()),
        absl::StrCat("use 1..", kMaxCapacity, ", or 0 for the default ", kDefaultCapacity));
  }
  if (r.num_shards() < 0) {
    Bad("replay.num_shards", absl::StrCat(r.num_shards()),
        "it must be >= 0 (0 means every shard the learner is configured with)");
  }
  const std::string unused =
      "KIND_COLLECT's table is a FIFO queue each row leaves once (only replay.capacity and "
      "replay.num_shards apply); leave it unset";
  if (r.sampler() != v1::SAMPLER_UNSPECIFIED) {
    Bad("replay.sampler", EnumText(v1::Sampler_Name(r.sampler()), r.sampler()), unused);
  }
  const std::pair<const char*, double> fields[] = {
      {"replay.priority_exponent", r.priority_exponent()},
      {"replay.importance_sampling_exponent", r.importance_sampling_exponent()},
      {"replay.samples_per_insert", r.samples_per_insert()},
      {"replay.error_buffer", r.error_buffer()},
      {"replay.min_size_to_sample", static_cast<double>(r.min_size_to_sample())},
      {"replay.max_times_sampled", static_cast<double>(r.max_times_sampled())},
  };
  for (const auto& [path, value] : fields) {
    if (value != 0) Bad(path, absl::StrCat(value), unused);
  }
}

}  // namespace

absl::StatusOr<v1::ExperimentSpec> ValidateAndFillSpec(const v1::ExperimentSpec& spec) {
  SpecChecker checker(spec);
  checker.Run();
  if (!checker.problems().empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(checker.problems(), "; "));
  }
  if (!checker.unsupported().empty()) {
    return absl::UnimplementedError(absl::StrJoin(checker.unsupported(), "; "));
  }
  return std::move(checker.filled());
}

std::vector<std::string> SpecProblems(const v1::ExperimentSpec& spec) {
  SpecChecker checker(spec);
  checker.Run();
  return std::move(checker.problems());
}

absl::StatusOr<v1::ExperimentSpec> ValidateSpecForLearner(const v1::ExperimentSpec& spec,
                                                          int replay_shards) {
  PRL_ASSIGN_OR_RETURN(v1::ExperimentSpec filled, ValidateAndFillSpec(spec));
  const bool uses_replay = filled.kind() == v1::ExperimentSpec::KIND_TRAIN ||
                           filled.kind() == v1::ExperimentSpec::KIND_COLLECT;
  if (uses_replay && filled.replay().num_shards() > replay_shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        FieldProblem("replay.num_shards", filled.replay().num_shards(),
                     absl::StrCat("this learner has ", replay_shards, " replay shard",
                                  replay_shards == 1 ? "" : "s",
                                  " (--learner_replay); use at most that, or 0 for all"))));
  }
  return filled;
}

}  // namespace prl::learner
