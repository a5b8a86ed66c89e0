// Transitions laid out the way a replay table's signature wants them: one growing byte buffer per
// signature column, filled row by row from the names the actor knows (Assignment.signature in
// proto/actor.proto), and handed to the replay client as an InsertBatch that views those buffers
// (no copy until the client encodes the request). No gRPC here.
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
  // Errors: INVALID_ARGUMENT naming the column ("assignment.signature[2] ('foo'): ...") for an
  // unknown or repeated name, a wrong dtype or shape, or an empty signature.
  static absl::StatusOr<TransitionBuffer> Create(
      std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
      int obs_dim, int action_dim);

  // Appends one row. Span sizes must match the dims given to Create (CHECK-fails otherwise).
  void Add(const Transition& transition);
  // Appends every row of `other`, which must have been created with the same signature.
  void Append(const TransitionBuffer& other);
  // Rows held.
  int64_t rows() const { return rows_; }
  // The rows as one insert request into the table; views this buffer, so it is valid until the
  // next Add, Append or Clear.
  replay::InsertBatch Batch() const;
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
    kTimeout
  };
  struct Column {
    std::string name;
    Field field;
    v1::Tensor::DType dtype;
    std::vector<int64_t> shape;  // of one row
    std::string bytes;
  };

  TransitionBuffer() = default;

  std::string table_;
  int obs_dim_ = 0;
  int action_dim_ = 0;
  std::vector<Column> columns_;
  int64_t rows_ = 0;
};

}  // namespace prl::actor

#endif  // PRL_ACTOR_TRANSITION_BUFFER_H_
