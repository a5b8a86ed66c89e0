#include "actor/transition_buffer.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::actor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

google::protobuf::RepeatedPtrField<v1::ColumnSpec> Signature(
    const std::vector<std::tuple<std::string, v1::Tensor::DType, std::vector<int64_t>>>& columns) {
  google::protobuf::RepeatedPtrField<v1::ColumnSpec> signature;
  for (const auto& [name, dtype, shape] : columns) {
    v1::ColumnSpec* c = signature.Add();
    c->set_name(name);
    c->set_dtype(dtype);
    for (int64_t d : shape) c->add_shape(d);
  }
  return signature;
}

template <typename T>
std::vector<T> Values(const replay::InsertColumn& column) {
  const std::string bytes = column.data.ToString();
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

constexpr auto kF32 = v1::Tensor::DTYPE_FLOAT32;
constexpr auto kI64 = v1::Tensor::DTYPE_INT64;

TEST(TransitionBufferTest, FillsTheSignatureColumnsInOrder) {
  auto buffer = TransitionBuffer::Create("t",
                                         Signature({{"next_observation", kF32, {2}},
                                                    {"action", kF32, {1}},
                                                    {"discount", kF32, {}},
                                                    {"reward", kF32, {}},
                                                    {"observation", kF32, {2}},
                                                    {"env_steps", kI64, {}},
                                                    {"task_index", kI64, {}}}),
                                         /*obs_dim=*/2, /*action_dim=*/1);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  const std::vector<float> obs = {1, 2}, next = {3, 4}, action = {0.5f};
  buffer->Add({obs, action, 1.5f, 0.0f, next, 1, 3});
  buffer->Add({next, action, -1.0f, 1.0f, obs, 1, 3});
  EXPECT_EQ(buffer->rows(), 2);

  const replay::InsertBatch batch = buffer->Batch();
  EXPECT_EQ(batch.table, "t");
  ASSERT_EQ(batch.columns.size(), 7u);
  EXPECT_EQ(batch.columns[0].name, "next_observation");
  EXPECT_THAT(batch.columns[0].shape, ElementsAre(2, 2));
  EXPECT_THAT(Values<float>(batch.columns[0]), ElementsAre(3, 4, 1, 2));
  EXPECT_THAT(Values<float>(batch.columns[1]), ElementsAre(0.5f, 0.5f));
  EXPECT_THAT(batch.columns[2].shape, ElementsAre(2));
  EXPECT_THAT(Values<float>(batch.columns[2]), ElementsAre(0, 1));
  EXPECT_THAT(Values<float>(batch.columns[3]), ElementsAre(1.5f, -1.0f));
  EXPECT_THAT(Values<float>(batch.columns[4]), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(batch.columns[5].dtype, kI64);
  EXPECT_THAT(Values<int64_t>(batch.columns[5]), ElementsAre(1, 1));
  EXPECT_THAT(Values<int64_t>(batch.columns[6]), ElementsAre(3, 3));

  TransitionBuffer copy = *buffer;
  buffer->Append(copy);
  EXPECT_EQ(buffer->rows(), 4);
  EXPECT_THAT(buffer->Batch().columns[0].shape, ElementsAre(4, 2));
  // dropping leading rows keeps the rest, in order, in every column.
  buffer->DropFront(3);
  EXPECT_EQ(buffer->rows(), 1);
  EXPECT_THAT(buffer->Batch().columns[0].shape, ElementsAre(1, 2));
  EXPECT_THAT(Values<float>(buffer->Batch().columns[0]), ElementsAre(1, 2));
  EXPECT_THAT(Values<float>(buffer->Batch().columns[3]), ElementsAre(-1.0f));
  EXPECT_THAT(Values<int64_t>(buffer->Batch().columns[6]), ElementsAre(3));
  buffer->DropFront(1);
  EXPECT_EQ(buffer->rows(), 0);
  buffer->Append(copy);
  buffer->Clear();
  EXPECT_EQ(buffer->rows(), 0);
  EXPECT_EQ(buffer->Batch().columns[0].data.size(), 0);
}

TEST(TransitionBufferTest, FillsTheEpisodeColumnsOfCollection) {
  auto buffer = TransitionBuffer::Create("c",
                                         Signature({{"episode", kI64, {}},
                                                    {"observation", kF32, {2}},
                                                    {"step", kI64, {}},
                                                    {"timeout", kF32, {}},
                                                    {"discount", kF32, {}}}),
                                         /*obs_dim=*/2, /*action_dim=*/1);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  const std::vector<float> obs = {1, 2}, next = {3, 4}, action = {0.5f};
  Transition first{obs, action, 0.0f, 1.0f, next};
  first.episode = int64_t{1} << 40;
  first.step = 0;
  Transition last = first;
  last.step = 199;
  last.timeout = 1;
  buffer->Add(first);
  buffer->Add(last);
  const replay::InsertBatch batch = buffer->Batch();
  ASSERT_EQ(batch.columns.size(), 5u);
  EXPECT_EQ(batch.columns[0].dtype, kI64);
  EXPECT_THAT(batch.columns[0].shape, ElementsAre(2));
  EXPECT_THAT(Values<int64_t>(batch.columns[0]), ElementsAre(int64_t{1} << 40, int64_t{1} << 40));
  EXPECT_THAT(Values<int64_t>(batch.columns[2]), ElementsAre(0, 199));
  EXPECT_EQ(batch.columns[3].dtype, kF32);
  EXPECT_THAT(Values<float>(batch.columns[3]), ElementsAre(0.0f, 1.0f));
  EXPECT_THAT(Values<float>(batch.columns[4]), ElementsAre(1.0f, 1.0f));

  // the new names have the dtypes the learner's collection table gives them
  auto bad_step = TransitionBuffer::Create("c", Signature({{"step", kF32, {}}}), 2, 1);
  EXPECT_THAT(bad_step.status().message(), HasSubstr("DTYPE_FLOAT32 [] does not match"));
  auto bad_timeout = TransitionBuffer::Create("c", Signature({{"timeout", kF32, {1}}}), 2, 1);
  EXPECT_THAT(bad_timeout.status().message(), HasSubstr("[1] does not match"));
}

TEST(TransitionBufferTest, RefusesUnknownNamesAndWrongShapes) {
  auto unknown = TransitionBuffer::Create(
      "t", Signature({{"observation", kF32, {2}}, {"logits", kF32, {2}}}), 2, 1);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("assignment.signature[1] ('logits')"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown column"));

  auto shape = TransitionBuffer::Create("t", Signature({{"observation", kF32, {3}}}), 2, 1);
  EXPECT_THAT(shape.status().message(), HasSubstr("[3] does not match"));
  auto dtype = TransitionBuffer::Create("t", Signature({{"reward", kI64, {}}}), 2, 1);
  EXPECT_THAT(dtype.status().message(), HasSubstr("DTYPE_INT64 [] does not match"));
  auto twice =
      TransitionBuffer::Create("t", Signature({{"reward", kF32, {}}, {"reward", kF32, {}}}), 2, 1);
  EXPECT_THAT(twice.status().message(), HasSubstr("appears twice"));
  auto empty = TransitionBuffer::Create("t", Signature({}), 2, 1);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));
}

TEST(TransitionBufferTest, FillsTheHistoryColumnsAndChecksTheirShapes) {
  // W = 2 with obs_dim 2 and action_dim 1
  auto buffer = TransitionBuffer::Create("m",
                                         Signature({{"history_mask", kF32, {2}},
                                                    {"observation", kF32, {2}},
                                                    {"history_observation", kF32, {3, 2}},
                                                    {"history_action", kF32, {2, 1}}}),
                                         /*obs_dim=*/2, /*action_dim=*/1);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->history_window(), 2);
  EXPECT_EQ(buffer->row_bytes(), 4 * (2 + 2 + 6 + 2));
  const std::vector<float> obs = {1, 2}, next = {3, 4}, action = {0.5f};
  const std::vector<float> states = {0, 0, 1, 2, 3, 4}, actions = {0, 0.5f}, mask = {0, 1};
  Transition t{obs, action, 0.0f, 1.0f, next};
  t.history_observation = states;
  t.history_action = actions;
  t.history_mask = mask;
  buffer->Add(t);
  const replay::InsertBatch batch = buffer->Batch();
  EXPECT_THAT(batch.columns[0].shape, ElementsAre(1, 2));
  EXPECT_THAT(Values<float>(batch.columns[0]), ElementsAre(0, 1));
  EXPECT_THAT(batch.columns[2].shape, ElementsAre(1, 3, 2));
  EXPECT_THAT(Values<float>(batch.columns[2]), ElementsAre(0, 0, 1, 2, 3, 4));
  EXPECT_THAT(batch.columns[3].shape, ElementsAre(1, 2, 1));
  EXPECT_THAT(Values<float>(batch.columns[3]), ElementsAre(0, 0.5f));

  // no history column: W 0
  EXPECT_EQ(
      TransitionBuffer::Create("m", Signature({{"reward", kF32, {}}}), 2, 1)->history_window(), 0);
  // shapes that do not fit the dims, W 0, or a W the other columns do not share
  auto wrong_obs =
      TransitionBuffer::Create("m", Signature({{"history_observation", kF32, {3, 5}}}), 2, 1);
  EXPECT_EQ(wrong_obs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_obs.status().message(),
              HasSubstr("assignment.signature[0] ('history_observation'): DTYPE_FLOAT32 [3, 5] "
                        "does not match what the actor writes: DTYPE_FLOAT32 [W + 1, 2]"));
  auto no_window =
      TransitionBuffer::Create("m", Signature({{"history_observation", kF32, {1, 2}}}), 2, 1);
  EXPECT_THAT(no_window.status().message(), HasSubstr("[1, 2] does not match"));
  auto wrong_action =
      TransitionBuffer::Create("m", Signature({{"history_action", kF32, {4, 2}}}), 2, 1);
  EXPECT_THAT(wrong_action.status().message(), HasSubstr("[W, 1]"));
  auto wrong_mask =
      TransitionBuffer::Create("m", Signature({{"history_mask", kF32, {2, 1}}}), 2, 1);
  EXPECT_THAT(wrong_mask.status().message(), HasSubstr("[2, 1] does not match"));
  auto too_long = TransitionBuffer::Create("m", Signature({{"history_mask", kF32, {5000}}}), 2, 1);
  EXPECT_THAT(too_long.status().message(), HasSubstr("W in 1..1024"));
  auto mixed = TransitionBuffer::Create(
      "m", Signature({{"history_observation", kF32, {4, 2}}, {"history_action", kF32, {2, 1}}}), 2,
      1);
  EXPECT_THAT(mixed.status().message(),
              HasSubstr("assignment.signature[1] ('history_action'): [2, 1] holds 2 "
                        "transitions, but 'history_observation' holds 3"));
  auto dtype = TransitionBuffer::Create("m", Signature({{"history_mask", kI64, {2}}}), 2, 1);
  EXPECT_THAT(dtype.status().message(), HasSubstr("DTYPE_INT64 [2] does not match"));
}

TEST(TransitionBufferTest, TakesLeadingRowsIntoABatch) {
  auto buffer = TransitionBuffer::Create("t", Signature({{"reward", kF32, {}}}), 2, 1);
  ASSERT_TRUE(buffer.ok());
  const std::vector<float> obs = {1, 2}, action = {0.5f};
  for (int i = 0; i < 3; ++i) buffer->Add({obs, action, static_cast<float>(i), 1.0f, obs});
  EXPECT_THAT(Values<float>(buffer->Batch(2).columns[0]), ElementsAre(0, 1));
  EXPECT_THAT(buffer->Batch(2).columns[0].shape, ElementsAre(2));
  EXPECT_THAT(Values<float>(buffer->Batch(7).columns[0]), ElementsAre(0, 1, 2));
}

TEST(TransitionBufferTest, DiscountsReturnsToTheEndOfTheEpisode) {
  // by hand, discount 0.5: R2 = 4, R1 = 2 + 0.5·4 = 4, R0 = 1 + 0.5·4 = 3
  EXPECT_THAT(DiscountedReturns(std::vector<float>{1, 2, 4}, 0.5), ElementsAre(3, 4, 4));
  EXPECT_THAT(DiscountedReturns(std::vector<float>{1, -1, 3}, 1.0), ElementsAre(3, 2, 3));
  EXPECT_TRUE(DiscountedReturns({}, 0.9).empty());
}

TEST(TransitionBufferTest, EpisodeBufferKeepsFinishedEpisodesWithTheirReturns) {
  auto episodes = EpisodeBuffer::Create(
      "sil", Signature({{"reward", kF32, {}}, {"step", kI64, {}}}), /*obs_dim=*/2,
      /*action_dim=*/1, /*num_envs=*/2, /*discount=*/0.5, /*max_rows=*/3);
  ASSERT_TRUE(episodes.ok()) << episodes.status();
  const std::vector<float> obs = {1, 2}, action = {0.5f};
  const auto row = [&](float reward, int64_t step) {
    Transition t{obs, action, reward, 1.0f, obs};
    t.step = step;
    return t;
  };
  // env 0: rewards 1, 2, 4 (returns 3, 4, 4); env 1 interleaved: 2, then 8 (returns 6, 8)
  episodes->Add(0, row(1, 0));
  episodes->Add(1, row(2, 0));
  episodes->Add(0, row(2, 1));
  episodes->Add(1, row(8, 1));
  episodes->Add(0, row(4, 2));
  EXPECT_EQ(episodes->finished().rows(), 0);
  EXPECT_TRUE(episodes->Finish(0));
  EXPECT_TRUE(episodes->Finish(1));
  TransitionBuffer& finished = episodes->finished();
  EXPECT_EQ(finished.table(), "sil");
  const replay::InsertBatch batch = finished.Batch();
  ASSERT_EQ(batch.columns.size(), 3u);
  EXPECT_EQ(batch.columns[2].name, "return");
  EXPECT_EQ(batch.columns[2].dtype, kF32);
  EXPECT_THAT(batch.columns[2].shape, ElementsAre(5));
  EXPECT_THAT(Values<float>(batch.columns[0]), ElementsAre(1, 2, 4, 2, 8));
  EXPECT_THAT(Values<int64_t>(batch.columns[1]), ElementsAre(0, 1, 2, 0, 1));
  EXPECT_THAT(Values<float>(batch.columns[2]), ElementsAre(3, 4, 4, 6, 8));
  finished.Clear();

  // an episode longer than max_rows is dropped whole; the next one is kept again
  for (int i = 0; i < 4; ++i) episodes->Add(0, row(1, i));
  EXPECT_FALSE(episodes->Finish(0));
  EXPECT_EQ(finished.rows(), 0);
  episodes->Add(0, row(1, 0));
  EXPECT_TRUE(episodes->Finish(0));
  EXPECT_THAT(Values<float>(finished.Batch().columns[2]), ElementsAre(1));
  // an abandoned episode leaves nothing
  finished.Clear();
  episodes->Add(1, row(1, 0));
  episodes->Abandon(1);
  EXPECT_TRUE(episodes->Finish(1));
  EXPECT_EQ(finished.rows(), 0);

  auto discount = EpisodeBuffer::Create("sil", Signature({{"reward", kF32, {}}}), 2, 1, 1,
                                        /*discount=*/0, 10);
  EXPECT_THAT(discount.status().message(), HasSubstr("assignment.episode_discount: 0"));
  // "return" is the actor's own column: a signature may not name it
  auto named = TransitionBuffer::Create("t", Signature({{"return", kF32, {}}}), 2, 1);
  EXPECT_THAT(named.status().message(), HasSubstr("unknown column"));
}

}  // namespace
}  // namespace prl::actor
