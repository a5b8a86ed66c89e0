// Transitions laid out the way a replay table's signature wants them: one growing byte buffer per
// signature column, filled row by row from the names the actor knows (Assignment.signature in
// proto/actor.proto), and handed to the replay client as an InsertBatch that views those buffers
// (no copy until the client encodes the request). EpisodeBuffer builds MCAT's self-imitation
// rows on top: whole training episodes with their discounted returns (Assignment.episode_table).
// No gRPC here.
//
// Thread-compatible: one acting thread owns a buffer.
#ifndef PRL_ACTOR_TRANSITION_BUFFER_H_
#define PRL_ACTOR_TRANSITION_BUFFER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_field.h"
#include "proto/replay.pb.h"
#include "replay/insert_batch.h"

namespace prl::actor {

// One transition, everything a known column may ask for.
struct Transition {
  // State at the decision, obs_dim floats.
  absl::Span<const float> observation;
  // What the actor chose (the env action for flat policies), action_dim floats.
  absl::Span<const float> action;
  // Reward summed over the decision's env steps.
  float reward = 0;
  // 0 when the episode terminated, 1 otherwise (also on time-limit truncation).
  float discount = 1;
  // State after the decision (the final one when the episode ended), obs_dim floats.
  absl::Span<const float> next_observation;
  // Env steps the decision covered.
  int64_t env_steps = 1;
  // MCAT task index of the env; 0 otherwise.
  int64_t task_index = 0;
  // Id of the episode the transition belongs to (unique over actors, envs and assignments).
  int64_t episode = 0;
  // Index of the transition within its episode, from 0.
  int64_t step = 0;
  // 1 when the episode ended here by its time limit (truncated, not terminated), else 0.
  float timeout = 0;
  // MCAT: the env's last W transitions, the row's own last (TransitionHistory::Fill with the
  // next observation last): (W + 1) x obs_dim states s_{t-W+1} .. s_{t+1}, W x action_dim
  // actions a_{t-W+1} .. a_t, W mask values. Needed only when the signature names a history
  // column (W = history_window()).
  absl::Span<const float> history_observation;
  absl::Span<const float> history_action;
  absl::Span<const float> history_mask;
};

class TransitionBuffer {
 public:
  // A buffer for `table` whose rows have `signature`'s columns, in its order. Every column must
  // be a name the actor fills, with its dtype and shape:
  //   observation, next_observation  float32 [obs_dim]
  //   action                         float32 [action_dim]
  //   reward, discount, timeout      float32 []
  //   env_steps, task_index          int64 []
  //   episode, step                  int64 []
  //   history_observation            float32 [W + 1, obs_dim]
  //   history_action                 float32 [W, action_dim]
  //   history_mask                   float32 [W]
  // where W (1..kMaxHistoryWindow) is the same for every history column named.
  // Errors: INVALID_ARGUMENT naming the column ("assignment.signature[2] ('foo'): ...") for an
  // unknown or repeated name, a wrong dtype or shape, history columns of different W, or an
  // empty signature.
  static absl::StatusOr<TransitionBuffer> Create(
      std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
      int obs_dim, int action_dim);
  // A buffer for a self-imitation episode table: `signature`'s columns, checked as Create checks
  // them, then "return" float32 [], which Add leaves 0 until SetReturns fills it. Errors: as
  // Create.
  static absl::StatusOr<TransitionBuffer> CreateWithReturn(
      std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
      int obs_dim, int action_dim);

  // The most transitions a history column may hold (W): bounds the actor's memory per env.
  static constexpr int kMaxHistoryWindow = 1024;

  // Appends one row. Span sizes must match the dims given to Create, and the history spans W
  // when a history column is named (CHECK-fails otherwise).
  void Add(const Transition& transition);
  // Appends every row of `other`, which must have been created with the same signature.
  void Append(const TransitionBuffer& other);
  // Sets the "return" column of every row held, returns[i] for row i (CHECK-fails for a buffer
  // without that column, or for a size other than rows()).
  void SetReturns(absl::Span<const float> returns);
  // Rows held.
  int64_t rows() const { return rows_; }
  // Bytes of one row, over every column.
  int64_t row_bytes() const { return row_bytes_; }
  // The table the rows are for.
  const std::string& table() const { return table_; }
  // W of the history columns the signature names; 0 when it names none.
  int history_window() const { return history_window_; }
  // The rows as one insert request into the table; views this buffer, so it is valid until the
  // next Add, Append, SetReturns, DropFront or Clear.
  replay::InsertBatch Batch() const { return Batch(rows_); }
  // The same for the first min(max_rows, rows()) rows.
  replay::InsertBatch Batch(int64_t max_rows) const;
  // Drops the first n rows (0 <= n <= rows()), e.g. those a failed insert stored anyway.
  void DropFront(int64_t n);
  // Drops every row.
  void Clear();

 private:
  enum class Field {
    kObservation,
    kAction,
    kReward,
    kDiscount,
    kNextObservation,
    kEnvSteps,
    kTaskIndex,
    kEpisode,
    kStep,
    kTimeout,
    kHistoryObservation,
    kHistoryAction,
    kHistoryMask,
    kReturn
  };
  struct Column {
    std::string name;
    Field field;
    v1::Tensor::DType dtype;
    std::vector<int64_t> shape;  // of one row
    std::string bytes;
  };

  TransitionBuffer() = default;
  // Create, with a "return" column last when `with_return`.
  static absl::StatusOr<TransitionBuffer> Build(
      std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
      int obs_dim, int action_dim, bool with_return);

  std::string table_;
  int obs_dim_ = 0;
  int action_dim_ = 0;
  int history_window_ = 0;
  std::vector<Column> columns_;
  int64_t row_bytes_ = 0;
  int64_t rows_ = 0;
};

// Discounted returns-to-go of one episode's rewards: R_t = r_t + discount · R_{t+1}, with R = 0
// after the last row (summed in double).
std::vector<float> DiscountedReturns(absl::Span<const float> rewards, double discount);

// MCAT self-imitation (Assignment.episode_table): each env's current training episode, row by
// row, and the rows of the episodes that ended, each with its discounted return-to-go in a
// "return" column, ready for the episode table. An episode is kept while it has at most
// max_rows rows; a longer one is dropped whole (its rows reach the main table only), which
// bounds the memory an env's episode takes.
//
// Thread-compatible: one acting thread owns it.
class EpisodeBuffer {
 public:
  // Buffers for `num_envs` envs' episodes for `table`, whose columns are `signature`'s plus
  // "return". Errors: as TransitionBuffer::CreateWithReturn; INVALID_ARGUMENT naming
  // assignment.episode_discount when `discount` is outside (0, 1].
  static absl::StatusOr<EpisodeBuffer> Create(
      std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
      int obs_dim, int action_dim, int num_envs, double discount, int64_t max_rows);

  // Adds a row to env's episode (t.reward is the reward of the return).
  void Add(int env, const Transition& t);
  // env's episode ended (terminated or truncated): moves its rows, with their returns, to
  // finished(). Returns false, keeping nothing, for an episode longer than max_rows.
  bool Finish(int env);
  // Forgets env's episode without keeping it.
  void Abandon(int env);
  // Rows of the finished episodes, in the order they ended; the caller inserts and drops them.
  TransitionBuffer& finished() { return finished_; }
  // Bytes of one row.
  int64_t row_bytes() const { return finished_.row_bytes(); }

 private:
  struct Running {
    TransitionBuffer rows;
    std::vector<float> rewards;
    bool too_long = false;
  };
  EpisodeBuffer(TransitionBuffer empty, int num_envs, double discount, int64_t max_rows);

  double discount_;
  int64_t max_rows_;
  // an empty buffer of the episode table's columns, to give memory back with
  TransitionBuffer empty_;
  std::vector<Running> running_;
  TransitionBuffer finished_;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_TRANSITION_BUFFER_H_
