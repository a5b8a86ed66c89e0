#include "actor/transition_history.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::actor {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// obs_dim 2 and action_dim 1; transition i of an episode has state (i, 10 + i), action 100 + i.
constexpr int kObs = 2;
constexpr int kAct = 1;

std::vector<float> State(int i) { return {static_cast<float>(i), static_cast<float>(10 + i)}; }
std::vector<float> Action(int i) { return {static_cast<float>(100 + i)}; }

struct Filled {
  std::vector<float> obs, actions, mask;
};
Filled Fill(const TransitionHistory& history, int env, int k, int last) {
  Filled f{std::vector<float>((k + 1) * kObs), std::vector<float>(k * kAct), std::vector<float>(k)};
  history.Fill(env, k, State(last), absl::MakeSpan(f.obs), absl::MakeSpan(f.actions),
               absl::MakeSpan(f.mask));
  return f;
}

TEST(TransitionHistoryTest, HoldsTheLastTransitionsOfTheEpisodeMaskingTheRest) {
  TransitionHistory history(/*num_envs=*/2, /*capacity=*/3, kObs, kAct);
  // a fresh episode: nothing but the current state
  Filled f = Fill(history, 0, 3, /*last=*/0);
  EXPECT_THAT(f.obs, ElementsAre(0, 0, 0, 0, 0, 0, 0, 10));
  EXPECT_THAT(f.actions, ElementsAre(0, 0, 0));
  EXPECT_THAT(f.mask, ElementsAre(0, 0, 0));

  // two transitions: the leading slot stays empty
  history.Push(0, State(0), Action(0));
  history.Push(0, State(1), Action(1));
  EXPECT_EQ(history.size(0), 2);
  EXPECT_EQ(history.size(1), 0);
  f = Fill(history, 0, 3, /*last=*/2);
  EXPECT_THAT(f.obs, ElementsAre(0, 0, 0, 10, 1, 11, 2, 12));
  EXPECT_THAT(f.actions, ElementsAre(0, 100, 101));
  EXPECT_THAT(f.mask, ElementsAre(0, 1, 1));

  // five transitions: only the last three are held, oldest first
  for (int i = 2; i < 5; ++i) history.Push(0, State(i), Action(i));
  EXPECT_EQ(history.size(0), 3);
  f = Fill(history, 0, 3, /*last=*/5);
  EXPECT_THAT(f.obs, ElementsAre(2, 12, 3, 13, 4, 14, 5, 15));
  EXPECT_THAT(f.actions, ElementsAre(102, 103, 104));
  EXPECT_THAT(f.mask, ElementsAre(1, 1, 1));
  // a shorter window reads the newest of them
  f = Fill(history, 0, 1, /*last=*/5);
  EXPECT_THAT(f.obs, ElementsAre(4, 14, 5, 15));
  EXPECT_THAT(f.actions, ElementsAre(104));
  EXPECT_THAT(f.mask, ElementsAre(1));
  f = Fill(history, 0, 0, /*last=*/5);
  EXPECT_THAT(f.obs, ElementsAre(5, 15));

  // across an episode boundary: the new episode sees nothing of the old one
  history.Reset(0);
  history.Push(0, State(20), Action(20));
  f = Fill(history, 0, 3, /*last=*/21);
  EXPECT_THAT(f.obs, ElementsAre(0, 0, 0, 0, 20, 30, 21, 31));
  EXPECT_THAT(f.actions, ElementsAre(0, 0, 120));
  EXPECT_THAT(f.mask, ElementsAre(0, 0, 1));
  // the other env was never touched
  f = Fill(history, 1, 2, /*last=*/7);
  EXPECT_THAT(f.mask, ElementsAre(0, 0));
  EXPECT_THAT(f.obs, ElementsAre(0, 0, 0, 0, 7, 17));
}

TEST(TransitionHistoryTest, GrowingKeepsWhatIsHeld) {
  TransitionHistory history(/*num_envs=*/1, /*capacity=*/2, kObs, kAct);
  for (int i = 0; i < 3; ++i) history.Push(0, State(i), Action(i));  // holds 1, 2
  history.Grow(4);
  EXPECT_EQ(history.capacity(), 4);
  history.Push(0, State(3), Action(3));
  Filled f = Fill(history, 0, 4, /*last=*/4);
  EXPECT_THAT(f.obs, ElementsAreArray({0, 0, 1, 11, 2, 12, 3, 13, 4, 14}));
  EXPECT_THAT(f.actions, ElementsAre(0, 101, 102, 103));
  EXPECT_THAT(f.mask, ElementsAre(0, 1, 1, 1));
  history.Grow(1);  // never shrinks
  EXPECT_EQ(history.capacity(), 4);

  // capacity 0 keeps nothing and still gives the current state
  TransitionHistory none(/*num_envs=*/1, /*capacity=*/0, kObs, kAct);
  none.Push(0, State(0), Action(0));
  EXPECT_EQ(none.size(0), 0);
  EXPECT_THAT(Fill(none, 0, 0, /*last=*/1).obs, ElementsAre(1, 11));
}

}  // namespace
}  // namespace prl::actor
