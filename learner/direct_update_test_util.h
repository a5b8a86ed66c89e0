// What the tests of the direct CPU updates (learner/direct_sac.h, learner/direct_td3.h) share:
// comparisons of an agent on the direct update with its autograd reference after both took the
// same updates from the same weights, batches and noise.
#ifndef PRL_LEARNER_DIRECT_UPDATE_TEST_UTIL_H_
#define PRL_LEARNER_DIRECT_UPDATE_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "ATen/ATen.h"
#include "gtest/gtest.h"
#include "learner/agent.h"
#include "learner/agent_internal.h"
#include "models/networks.h"

namespace prl::learner::direct_test {

// Within 1e-4 of b, relative above 1.
inline bool Near(double a, double b) {
  return std::abs(a - b) <= 1e-4 * std::max(1.0, std::abs(b));
}

// The largest difference of two blocks' weights.
inline double MaxDiff(const models::ParameterBlock& a, const models::ParameterBlock& b) {
  return (a.flat() - b.flat()).abs().max().item<double>();
}

// The largest difference of two blocks' flat gradients relative to the second's largest entry.
inline double GradientGap(const models::ParameterBlock& a, const models::ParameterBlock& b) {
  return (a.flat_grad() - b.flat_grad()).abs().max().item<double>() /
         std::max(1e-12, b.flat_grad().abs().max().item<double>());
}

// One update's statistics agree: the losses, α, Q and the entropy slot near, and every row's TD
// error (x from the direct agent, y from the reference).
inline void ExpectSameStats(const UpdateStats& x, const UpdateStats& y) {
  EXPECT_PRED2(Near, x.critic_loss, y.critic_loss);
  EXPECT_PRED2(Near, x.actor_loss, y.actor_loss);
  EXPECT_PRED2(Near, x.alpha, y.alpha);
  EXPECT_PRED2(Near, x.alpha_loss, y.alpha_loss);
  EXPECT_PRED2(Near, x.q_mean, y.q_mean);
  EXPECT_PRED2(Near, x.entropy, y.entropy);
  EXPECT_EQ(x.actor_updated, y.actor_updated);
  ASSERT_EQ(x.td_error_abs.size(), y.td_error_abs.size());
  size_t mismatched = 0;
  for (size_t i = 0; i < y.td_error_abs.size(); ++i) {
    mismatched += Near(x.td_error_abs[i], y.td_error_abs[i]) ? 0 : 1;
  }
  EXPECT_EQ(mismatched, 0u) << "rows whose TD errors differ";
}

// The gradients of the last Adam steps (left in the blocks' flat gradients), which Adam's scale
// invariance would hide in the weights: the critics' always, the actor's when it stepped.
inline void ExpectSameGradients(internal::TwinCriticAgent& direct,
                                internal::TwinCriticAgent& reference, bool actor_stepped) {
  EXPECT_LT(GradientGap(direct.critic().params(), reference.critic().params()), 1e-4);
  if (actor_stepped) {
    EXPECT_LT(GradientGap(direct.actor().params(), reference.actor().params()), 1e-4);
  }
}

// The two agents' networks agree, targets included (Adam's steps are ±lr-sized wherever a
// gradient is not tiny, so a wrong gradient anywhere shows as a difference of the order of
// lr = 3e-4).
inline void ExpectSameNetworks(internal::TwinCriticAgent& d, internal::TwinCriticAgent& r) {
  EXPECT_LT(MaxDiff(d.actor().params(), r.actor().params()), 2e-5);
  EXPECT_LT(MaxDiff(d.critic().params(), r.critic().params()), 2e-5);
  EXPECT_LT(MaxDiff(d.critic_target().params(), r.critic_target().params()), 2e-5);
  if (d.actor_target() != nullptr) {
    EXPECT_LT(MaxDiff(d.actor_target()->params(), r.actor_target()->params()), 2e-5);
  }
}

}  // namespace prl::learner::direct_test

#endif  // PRL_LEARNER_DIRECT_UPDATE_TEST_UTIL_H_
