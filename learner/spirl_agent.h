// SPiRL's high-level agent (Pertsch et al. 2020, Algorithm 1): SAC over skill latents z, with
// the divergence from a frozen, learned skill prior p(z|s) in place of the entropy bonus.
//
//   policy     π(z|s): a Gaussian on an MLP, z = b·tanh(u), u ~ N(μ_π(s), σ_π(s)), b =
//              latent_bound; by default a copy of the prior's network at the start (SPiRL's
//              prior-initialised policy)
//   divergence D(s) = clip(mean_j KL_j(N(μ_π, σ_π) ‖ p(z|s)), ±100): the policy's Gaussian
//              before the squashing against the prior, averaged over the latent dimensions
//              (SPiRL's code; so δ is per dimension); analytic by default, or a Monte-Carlo
//              estimate from kl_samples draws u ~ π: mean_n (log N(u_n; π) − log p(u_n|s)) / L
//   critics    y = r·scale + γ·d·(min_k Q'_k(s', z') − α·D(s')), z' ~ π(s')   (r: the reward
//              summed over the decision's H env steps; d: 0 when the episode terminated)
//   actor      mean(α·D(s) − min_k Q_k(s, z)), z ~ π(s) reparameterised
//   α          J(α) = α·(δ − D(s)) with D detached (SPiRL's alpha loss), one Adam step on log α;
//              D above δ raises α, below lowers it (fixed_alpha keeps it)
//
// The agent's "action" is z (act_dim = the prior's latent_dim). Everything else — twin critics,
// Polyak targets, Adam, checkpoints, export — is the TwinCriticAgent machinery SAC uses; the
// exported policy says OUTPUT_DECODED_LATENT with output_bound = b.
//
// Thread-compatible, like every Agent.
#ifndef PRL_LEARNER_SPIRL_AGENT_H_
#define PRL_LEARNER_SPIRL_AGENT_H_

#include <memory>

#include "ATen/core/Tensor.h"
#include "absl/status/statusor.h"
#include "learner/agent.h"
#include "models/prior_model.h"

namespace prl::learner {

// D(s) per row, [B]: the averaged, clipped KL of the file comment between the policy Gaussian
// (mean, log_std [B, L]) and `prior`. kl_samples 0: analytic; else `mc_noise` holds
// [kl_samples, B, L] standard-normal draws for u = μ + σ·ε. Differentiable in mean and log_std.
at::Tensor SpirlDivergence(const at::Tensor& mean, const at::Tensor& log_std,
                           const models::DiagonalGaussian& prior, int kl_samples,
                           const at::Tensor& mc_noise);

// A spirl agent for `options` (algorithm.spirl set; act_dim must be the prior's latent_dim)
// regularised towards `prior` (loaded on the agent's device): a SKILL_VAE's skill prior, or for
// EAP a CVAE's learned state prior π_state (eap's settings passed as algorithm.spirl; a CVAE
// with the fixed N(0, I) is refused). Unless
// spirl.random_policy_init, the policy takes the prior's network and starts as a copy of its
// weights. Errors: Agent::Create's; INVALID_ARGUMENT when act_dim or obs_dim differ from the
// prior's, or spirl.horizon from its horizon.
absl::StatusOr<std::unique_ptr<Agent>> CreateSpirlAgent(
    const AgentOptions& options, std::shared_ptr<const models::LatentPriorModel> prior);

}  // namespace prl::learner

#endif  // PRL_LEARNER_SPIRL_AGENT_H_
