#include "actor/transition_buffer.h"

#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/tensor.h"

namespace prl::actor {
namespace {

// Names the actor fills, with their dtype and the size of their one dimension (0: a scalar).
struct KnownColumn {
  const char* name;
  v1::Tensor::DType dtype;
  enum { kScalar, kObs, kAction } size;
};

constexpr KnownColumn kKnown[] = {
    {"observation", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kObs},
    {"action", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kAction},
    {"reward", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kScalar},
    {"discount", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kScalar},
    {"next_observation", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kObs},
    {"env_steps", v1::Tensor::DTYPE_INT64, KnownColumn::kScalar},
    {"task_index", v1::Tensor::DTYPE_INT64, KnownColumn::kScalar},
    {"episode", v1::Tensor::DTYPE_INT64, KnownColumn::kScalar},
    {"step", v1::Tensor::DTYPE_INT64, KnownColumn::kScalar},
    {"timeout", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kScalar},
};

std::string KnownNames() {
  std::vector<std::string> names;
  for (const KnownColumn& k : kKnown) names.push_back(k.name);
  return absl::StrJoin(names, ", ");
}

template <typename T>
void AppendValues(absl::Span<const T> values, std::string* bytes) {
  bytes->append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

}  // namespace

absl::StatusOr<TransitionBuffer> TransitionBuffer::Create(
    std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
    int obs_dim, int action_dim) {
  if (signature.empty()) {
    return absl::InvalidArgumentError(
        "assignment.signature is empty; the actor needs at least one column to insert");
  }
  TransitionBuffer buffer;
  buffer.table_ = std::move(table);
  buffer.obs_dim_ = obs_dim;
  buffer.action_dim_ = action_dim;
  std::set<std::string> seen;
  for (int i = 0; i < signature.size(); ++i) {
    const v1::ColumnSpec& spec = signature[i];
    const std::string where = absl::StrCat("assignment.signature[", i, "] ('", spec.name(), "')");
    int known = -1;
    for (int k = 0; k < static_cast<int>(std::size(kKnown)); ++k) {
      if (spec.name() == kKnown[k].name) known = k;
    }
    if (known < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown column; the actor fills only ", KnownNames()));
    }
    if (!seen.insert(spec.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the name appears twice"));
    }
    const KnownColumn& k = kKnown[known];
    std::vector<int64_t> shape;
    if (k.size == KnownColumn::kObs) shape = {obs_dim};
    if (k.size == KnownColumn::kAction) shape = {action_dim};
    const std::vector<int64_t> have(spec.shape().begin(), spec.shape().end());
    if (spec.dtype() != k.dtype || have != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", v1::Tensor::DType_Name(spec.dtype()), " ", ShapeString(have),
                       " does not match what the actor writes: ", v1::Tensor::DType_Name(k.dtype),
                       " ", ShapeString(shape)));
    }
    buffer.columns_.push_back(
        Column{spec.name(), static_cast<Field>(known), k.dtype, std::move(shape), {}});
  }
  return buffer;
}

void TransitionBuffer::Add(const Transition& t) {
  PRL_CHECK(static_cast<int>(t.observation.size()) == obs_dim_ &&
            static_cast<int>(t.next_observation.size()) == obs_dim_ &&
            static_cast<int>(t.action.size()) == action_dim_)
      << "transition sizes " << t.observation.size() << "/" << t.action.size() << "/"
      << t.next_observation.size() << " for obs_dim " << obs_dim_ << ", action_dim " << action_dim_;
  for (Column& c : columns_) {
    switch (c.field) {
      case Field::kObservation:
        AppendValues(t.observation, &c.bytes);
        break;
      case Field::kAction:
        AppendValues(t.action, &c.bytes);
        break;
      case Field::kReward:
        AppendValues(absl::MakeConstSpan(&t.reward, 1), &c.bytes);
        break;
      case Field::kDiscount:
        AppendValues(absl::MakeConstSpan(&t.discount, 1), &c.bytes);
        break;
      case Field::kNextObservation:
        AppendValues(t.next_observation, &c.bytes);
        break;
      case Field::kEnvSteps:
        AppendValues(absl::MakeConstSpan(&t.env_steps, 1), &c.bytes);
        break;
      case Field::kTaskIndex:
        AppendValues(absl::MakeConstSpan(&t.task_index, 1), &c.bytes);
        break;
      case Field::kEpisode:
        AppendValues(absl::MakeConstSpan(&t.episode, 1), &c.bytes);
        break;
      case Field::kStep:
        AppendValues(absl::MakeConstSpan(&t.step, 1), &c.bytes);
        break;
      case Field::kTimeout:
        AppendValues(absl::MakeConstSpan(&t.timeout, 1), &c.bytes);
        break;
    }
  }
  ++rows_;
}

void TransitionBuffer::Append(const TransitionBuffer& other) {
  PRL_CHECK(other.columns_.size() == columns_.size()) << "appending a different signature";
  for (size_t i = 0; i < columns_.size(); ++i) columns_[i].bytes.append(other.columns_[i].bytes);
  rows_ += other.rows_;
}

replay::InsertBatch TransitionBuffer::Batch() const {
  replay::InsertBatch batch;
  batch.table = table_;
  for (const Column& c : columns_) {
    replay::InsertColumn column;
    column.name = c.name;
    column.dtype = c.dtype;
    column.shape.push_back(rows_);
    column.shape.insert(column.shape.end(), c.shape.begin(), c.shape.end());
    column.data.Append(c.bytes);
    batch.columns.push_back(std::move(column));
  }
  return batch;
}

void TransitionBuffer::DropFront(int64_t n) {
  PRL_CHECK(n >= 0 && n <= rows_) << "DropFront(" << n << ") of " << rows_ << " rows";
  if (n == rows_) return Clear();
  for (Column& c : columns_) c.bytes.erase(0, c.bytes.size() / rows_ * n);
  rows_ -= n;
}

void TransitionBuffer::Clear() {
  for (Column& c : columns_) c.bytes.clear();
  rows_ = 0;
}

}  // namespace prl::actor
