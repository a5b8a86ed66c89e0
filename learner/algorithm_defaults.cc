#include "learner/algorithm_defaults.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "models/network_spec.h"

namespace prl::learner {
namespace {

// How a defaulted field is checked once resolved.
enum class Range { kPositive, kUnit };

const google::protobuf::FieldDescriptor* Field(const google::protobuf::Message& msg,
                                               absl::string_view path) {
  const std::string name(path.substr(path.rfind('.') + 1));
  const google::protobuf::FieldDescriptor* field = msg.GetDescriptor()->FindFieldByName(name);
  PRL_CHECK(field != nullptr) << "no field " << path;
  return field;
}

// A double field named by the last component of `path`: 0 means `fallback`, then the value
// must be finite and in `range`.
absl::Status ResolveDouble(absl::string_view path, double fallback, Range range,
                           google::protobuf::Message* msg) {
  const google::protobuf::FieldDescriptor* field = Field(*msg, path);
  const google::protobuf::Reflection* reflection = msg->GetReflection();
  double value = reflection->GetDouble(*msg, field);
  if (value == 0) value = fallback;
  const bool ok =
      std::isfinite(value) && (range == Range::kUnit ? value > 0 && value <= 1 : value > 0);
  if (!ok) {
    return FieldError(
        path, value,
        absl::StrCat(range == Range::kUnit ? "in (0, 1]" : "> 0", " (0 means ", fallback, ")"));
  }
  reflection->SetDouble(msg, field, value);
  return absl::OkStatus();
}

// An int32 count named by the last component of `path`: 0 means `fallback`, negative values
// are rejected.
absl::Status ResolveCount(absl::string_view path, int32_t fallback,
                          google::protobuf::Message* msg) {
  const google::protobuf::FieldDescriptor* field = Field(*msg, path);
  const google::protobuf::Reflection* reflection = msg->GetReflection();
  const int32_t value = reflection->GetInt32(*msg, field);
  if (value < 0) return FieldError(path, value, absl::StrCat(">= 0 (0 means ", fallback, ")"));
  if (value == 0) reflection->SetInt32(msg, field, fallback);
  return absl::OkStatus();
}

// The defaults below are those of proto/experiment.proto (each paper's), written here only:
// spec validation reads them through AlgorithmDefaults.

absl::Status ResolveSac(int64_t act_dim, v1::SacConfig* sac) {
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.sac.initial_alpha", 1.0, Range::kPositive, sac));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.sac.alpha_lr", 3e-4, Range::kPositive, sac));
  if (!sac->has_target_entropy()) sac->set_target_entropy(-static_cast<double>(act_dim));
  if (!std::isfinite(sac->target_entropy())) {
    return FieldError("algorithm.sac.target_entropy", sac->target_entropy(), "finite");
  }
  return absl::OkStatus();
}

absl::Status ResolveTd3(v1::Td3Config* td3) {
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.td3.policy_noise", 0.2, Range::kPositive, td3));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.td3.noise_clip", 0.5, Range::kPositive, td3));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.td3.policy_delay", 2, td3));
  return ResolveDouble("algorithm.td3.exploration_noise", 0.1, Range::kPositive, td3);
}

// SPiRL's (its maze settings): δ = 1 per latent dimension, α from 1 tuned at 3e-4, latents
// squashed to ±2, analytic KL. horizon stays 0 (the prior's) until the prior is known.
absl::Status ResolveSpirl(v1::SpirlConfig* spirl) {
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.spirl.target_divergence", 1.0, Range::kPositive, spirl));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.spirl.initial_alpha", 1.0, Range::kPositive, spirl));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.spirl.alpha_lr", 3e-4, Range::kPositive, spirl));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.spirl.latent_bound", 2.0, Range::kPositive, spirl));
  if (spirl->horizon() < 0 || spirl->horizon() > 1000) {
    return FieldError("algorithm.spirl.horizon", spirl->horizon(),
                      "in 1..1000, or 0 for the prior's horizon");
  }
  if (spirl->kl_samples() < 0 || spirl->kl_samples() > 100) {
    return FieldError("algorithm.spirl.kl_samples", spirl->kl_samples(),
                      "in 1..100, or 0 for the analytic divergence");
  }
  return absl::OkStatus();
}

// EAP's, with the spirl machinery's values (EAP fine-tunes with PPO and gives no δ): δ = 1, α
// from 1 tuned at 3e-4, latents squashed to ±2. horizon stays 0 (the prior's k) until known.
absl::Status ResolveEap(v1::EapConfig* eap) {
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.eap.target_divergence", 1.0, Range::kPositive, eap));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.eap.initial_alpha", 1.0, Range::kPositive, eap));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.eap.alpha_lr", 3e-4, Range::kPositive, eap));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.eap.latent_bound", 2.0, Range::kPositive, eap));
  if (eap->horizon() < 0 || eap->horizon() > 1000) {
    return FieldError("algorithm.eap.horizon", eap->horizon(),
                      "in 1..1000, or 0 for the prior's horizon");
  }
  return absl::OkStatus();
}

// PARROT's: SAC over the flow's latent (target entropy −latent_dim = −act_dim), squashed to ±3.
absl::Status ResolveParrot(int64_t act_dim, v1::ParrotConfig* parrot) {
  PRL_RETURN_IF_ERROR(ResolveSac(act_dim, parrot->mutable_sac()));
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.parrot.target_divergence", 1.0, Range::kPositive, parrot));
  return ResolveDouble("algorithm.parrot.latent_bound", 3.0, Range::kPositive, parrot);
}

// MCAT's: TD3's defaults for its actor-critic; the context model after CaDM (K = M = 10,
// z of 10); MCAT's context weight 0.01; self-imitation after Oh et al. (α 0.6, β 0.1).
absl::Status ResolveMcat(v1::McatConfig* mcat) {
  PRL_RETURN_IF_ERROR(ResolveTd3(mcat->mutable_td3()));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.mcat.context_history", 10, mcat));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.mcat.prediction_horizon", 10, mcat));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.mcat.context_dim", 10, mcat));
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.mcat.contrastive_margin", 1.0, Range::kPositive, mcat));
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.mcat.contrastive_weight", 0.01, Range::kPositive, mcat));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.mcat.model_lr", 1e-3, Range::kPositive, mcat));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.mcat.translator_lr", 3e-4, Range::kPositive, mcat));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.mcat.transfer_window_episodes", 10, mcat));
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.mcat.self_imitation_weight", 1.0, Range::kPositive, mcat));
  if (mcat->self_imitation_capacity() < 0) {
    return FieldError("algorithm.mcat.self_imitation_capacity", mcat->self_imitation_capacity(),
                      ">= 0 (0 means 100000)");
  }
  if (mcat->self_imitation_capacity() == 0) mcat->set_self_imitation_capacity(100000);
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.mcat.self_imitation_priority_exponent", 0.6,
                                    Range::kPositive, mcat));
  PRL_RETURN_IF_ERROR(
      ResolveDouble("algorithm.mcat.self_imitation_importance_exponent", 0.1, Range::kUnit, mcat));
  if (mcat->context_history() > 100 || mcat->prediction_horizon() > 100) {
    return FieldError("algorithm.mcat.context_history + prediction_horizon",
                      mcat->context_history() + mcat->prediction_horizon(), "each at most 100");
  }
  if (mcat->context_dim() > 256) {
    return FieldError("algorithm.mcat.context_dim", mcat->context_dim(), "in 1..256");
  }
  return absl::OkStatus();
}

// The network and the fields after the oneof, which every algorithm shares.
absl::Status ResolveSharedFields(v1::AlgorithmSpec* a) {
  PRL_RETURN_IF_ERROR(models::ResolveNetworkSpec("algorithm.network", a->mutable_network()));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.discount", 0.99, Range::kUnit, a));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.tau", 0.005, Range::kUnit, a));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.target_update_period", 1, a));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.batch_size", 256, a));
  PRL_RETURN_IF_ERROR(ResolveCount("algorithm.n_step", 1, a));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.actor_lr", 3e-4, Range::kPositive, a));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.critic_lr", 3e-4, Range::kPositive, a));
  PRL_RETURN_IF_ERROR(ResolveDouble("algorithm.reward_scale", 1.0, Range::kPositive, a));
  if (!std::isfinite(a->max_grad_norm()) || a->max_grad_norm() < 0) {
    return FieldError("algorithm.max_grad_norm", a->max_grad_norm(), ">= 0 (0 means no clipping)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ResolveAlgorithmSpec(int64_t act_dim, v1::AlgorithmSpec* a) {
  switch (a->algorithm_case()) {
    case v1::AlgorithmSpec::kSac:
      PRL_RETURN_IF_ERROR(ResolveSac(act_dim, a->mutable_sac()));
      break;
    case v1::AlgorithmSpec::kTd3:
      PRL_RETURN_IF_ERROR(ResolveTd3(a->mutable_td3()));
      break;
    case v1::AlgorithmSpec::kSpirl:
      PRL_RETURN_IF_ERROR(ResolveSpirl(a->mutable_spirl()));
      break;
    case v1::AlgorithmSpec::kParrot:
      PRL_RETURN_IF_ERROR(ResolveParrot(act_dim, a->mutable_parrot()));
      break;
    case v1::AlgorithmSpec::kEap:
      PRL_RETURN_IF_ERROR(ResolveEap(a->mutable_eap()));
      break;
    case v1::AlgorithmSpec::kMcat:
      PRL_RETURN_IF_ERROR(ResolveMcat(a->mutable_mcat()));
      break;
    case v1::AlgorithmSpec::ALGORITHM_NOT_SET:
      return absl::InvalidArgumentError("algorithm: not set; it must be one of sac, td3");
    default: {
      const std::string name =
          v1::AlgorithmSpec::descriptor()->FindFieldByNumber(a->algorithm_case())->name();
      return absl::UnimplementedError(absl::StrCat(
          "algorithm.", name,
          ": not implemented by the learner's agent yet (sac, td3, spirl, eap, parrot and mcat "
          "are)"));
    }
  }
  return ResolveSharedFields(a);
}

v1::AlgorithmSpec AlgorithmDefaults(v1::AlgorithmSpec::AlgorithmCase which, int64_t act_dim) {
  v1::AlgorithmSpec a;
  absl::Status resolved = ResolveSharedFields(&a);
  if (which == v1::AlgorithmSpec::kSac) resolved.Update(ResolveSac(act_dim, a.mutable_sac()));
  if (which == v1::AlgorithmSpec::kTd3) resolved.Update(ResolveTd3(a.mutable_td3()));
  if (which == v1::AlgorithmSpec::kSpirl) resolved.Update(ResolveSpirl(a.mutable_spirl()));
  if (which == v1::AlgorithmSpec::kParrot) {
    resolved.Update(ResolveParrot(act_dim, a.mutable_parrot()));
  }
  if (which == v1::AlgorithmSpec::kEap) resolved.Update(ResolveEap(a.mutable_eap()));
  if (which == v1::AlgorithmSpec::kMcat) resolved.Update(ResolveMcat(a.mutable_mcat()));
  PRL_CHECK(resolved.ok()) << "the algorithm defaults fail their own checks: "
                           << resolved.ToString();
  return a;
}

}  // namespace prl::learner
