// MCAT (Guo, Wu & Lee, "Learning Action Translator for Meta RL on Sparse-Reward Tasks") behind
// the Algorithm interface: a context-conditioned TD3 whose policy and critics read [s, z_t],
// z_t = C(the env's last K transitions); the context encoder C and forward model F
// (models/mcat_model.h) trained with L_forw + w·L_cont; the action translator H trained with
// L_trans; self-imitation on a second, prioritised table of finished episodes with their
// returns; and policy transfer — each training task acts with its learned policy π(s, z_t) or
// with the policy of the best task translated to it, whichever earned more recently.
//
// Per Update, in the paper's order (components trained alternately, not jointly): one Adam
// step of C and F; one of H (C and F fixed); one TD3 step on [s, C(history)] with C fixed
// (plus the self-imitation term on a batch of the episode table).
//
// The transfer plan (prl.v1.TransferPlan, published with every policy version): for task i,
// L_i is the mean return of its last W training episodes that acted with the learned policy
// and T_i of those that acted translated (W = transfer_window_episodes). The source is the
// task j* with the highest L_j; task i ≠ j* acts translated from j* when T_i > L_i, or, before
// any translated episode of i has been seen since j* became the source, when L_{j*} > L_i (so
// a promising transfer gets tried). Otherwise, and always with disable_policy_transfer, -1.
//
// Thread-compatible, like every Algorithm.
#ifndef PRL_LEARNER_MCAT_ALGORITHM_H_
#define PRL_LEARNER_MCAT_ALGORITHM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "learner/algorithm.h"
#include "learner/model_store.h"

namespace prl::learner {

// Builds the mcat algorithm of options.spec (algorithm.mcat, validated and filled). With
// disable_policy_transfer the translator is neither trained nor stored. With a model store,
// Finish stores the action translator there as a new version of
// "<experiment id>-translator" (PRIOR_KIND_ACTION_TRANSLATOR; the prior server's Translate
// serves it). Errors: INVALID_ARGUMENT naming a field; FAILED_PRECONDITION for a CUDA device
// without one.
absl::StatusOr<std::unique_ptr<Algorithm>> CreateMcatAlgorithm(const AlgorithmOptions& options,
                                                               ModelStore* models = nullptr);

}  // namespace prl::learner

#endif  // PRL_LEARNER_MCAT_ALGORITHM_H_
