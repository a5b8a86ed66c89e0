#include "actor/transition_buffer.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/tensor.h"

namespace prl::actor {
namespace {

// Names the actor fills, with their dtype and the shape of one row.
struct KnownColumn {
  const char* name;
  v1::Tensor::DType dtype;
  enum {
    kScalar,         // []
    kObs,            // [obs_dim]
    kAction,         // [action_dim]
    kHistoryObs,     // [W + 1, obs_dim]
    kHistoryAction,  // [W, action_dim]
    kHistoryMask,    // [W]
  } size;
};

// In the order of TransitionBuffer::Field.
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
    {"history_observation", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kHistoryObs},
    {"history_action", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kHistoryAction},
    {"history_mask", v1::Tensor::DTYPE_FLOAT32, KnownColumn::kHistoryMask},
};

// The self-imitation column (CreateWithReturn): not one a signature may name.
constexpr char kReturnColumn[] = "return";

// W of a history column's shape `have` (0 when the shape is not one of a history column of
// that kind), and the shape the actor writes for it, for messages.
int HistoryWindow(const KnownColumn& k, const std::vector<int64_t>& have, int obs_dim,
                  int action_dim, std::string* want) {
  int64_t w = 0;
  switch (k.size) {
    case KnownColumn::kHistoryObs:
      *want = absl::StrCat("[W + 1, ", obs_dim, "]");
      if (have.size() == 2 && have[1] == obs_dim) w = have[0] - 1;
      break;
    case KnownColumn::kHistoryAction:
      *want = absl::StrCat("[W, ", action_dim, "]");
      if (have.size() == 2 && have[1] == action_dim) w = have[0];
      break;
    case KnownColumn::kHistoryMask:
      *want = "[W]";
      if (have.size() == 1) w = have[0];
      break;
    default:
      break;
  }
  absl::StrAppend(want, " with W in 1..", TransitionBuffer::kMaxHistoryWindow);
  return w >= 1 && w <= TransitionBuffer::kMaxHistoryWindow ? static_cast<int>(w) : 0;
}

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
  return Build(std::move(table), signature, obs_dim, action_dim, /*with_return=*/false);
}

absl::StatusOr<TransitionBuffer> TransitionBuffer::CreateWithReturn(
    std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
    int obs_dim, int action_dim) {
  return Build(std::move(table), signature, obs_dim, action_dim, /*with_return=*/true);
}

absl::StatusOr<TransitionBuffer> TransitionBuffer::Build(
    std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
    int obs_dim, int action_dim, bool with_return) {
  if (signature.empty()) {
    return absl::InvalidArgumentError(
        "assignment.signature is empty; the actor needs at least one column to insert");
  }
  TransitionBuffer buffer;
  buffer.table_ = std::move(table);
  buffer.obs_dim_ = obs_dim;
  buffer.action_dim_ = action_dim;
  std::set<std::string> seen;
  std::string history_column;  // the first history column named, for messages
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
    const std::vector<int64_t> have(spec.shape().begin(), spec.shape().end());
    std::vector<int64_t> shape;
    std::string want;
    if (k.size == KnownColumn::kHistoryObs || k.size == KnownColumn::kHistoryAction ||
        k.size == KnownColumn::kHistoryMask) {
      // history columns: W comes from the shape, the same for all of them
      const int w = HistoryWindow(k, have, obs_dim, action_dim, &want);
      if (w > 0) shape = have;
      if (w > 0 && buffer.history_window_ > 0 && w != buffer.history_window_) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", ShapeString(have), " holds ", w,
                                                       " transitions, but '", history_column,
                                                       "' holds ", buffer.history_window_));
      }
      if (w > 0 && buffer.history_window_ == 0) {
        buffer.history_window_ = w;
        history_column = spec.name();
      }
      if (w == 0) shape = {-1};  // matches no shape: refused below
    } else {
      if (k.size == KnownColumn::kObs) shape = {obs_dim};
      if (k.size == KnownColumn::kAction) shape = {action_dim};
      want = ShapeString(shape);
    }
    if (spec.dtype() != k.dtype || have != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", v1::Tensor::DType_Name(spec.dtype()), " ", ShapeString(have),
          " does not match what the actor writes: ", v1::Tensor::DType_Name(k.dtype), " ", want));
    }
    buffer.columns_.push_back(
        Column{spec.name(), static_cast<Field>(known), k.dtype, std::move(shape), {}});
  }
  if (with_return) {
    buffer.columns_.push_back(
        Column{kReturnColumn, Field::kReturn, v1::Tensor::DTYPE_FLOAT32, {}, {}});
  }
  for (const Column& c : buffer.columns_) {
    int64_t elements = 1;
    for (int64_t d : c.shape) elements *= d;
    buffer.row_bytes_ +=
        elements * (c.dtype == v1::Tensor::DTYPE_INT64 ? sizeof(int64_t) : sizeof(float));
  }
  return buffer;
}

void TransitionBuffer::Add(const Transition& t) {
  PRL_CHECK(static_cast<int>(t.observation.size()) == obs_dim_ &&
            static_cast<int>(t.next_observation.size()) == obs_dim_ &&
            static_cast<int>(t.action.size()) == action_dim_)
      << "transition sizes " << t.observation.size() << "/" << t.action.size() << "/"
      << t.next_observation.size() << " for obs_dim " << obs_dim_ << ", action_dim " << action_dim_;
  const size_t w = history_window_;
  PRL_CHECK(w == 0 || (t.history_observation.size() == (w + 1) * obs_dim_ &&
                       t.history_action.size() == w * action_dim_ && t.history_mask.size() == w))
      << "history sizes " << t.history_observation.size() << "/" << t.history_action.size() << "/"
      << t.history_mask.size() << " for W " << w;
  const float no_return = 0;
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
      case Field::kHistoryObservation:
        AppendValues(t.history_observation, &c.bytes);
        break;
      case Field::kHistoryAction:
        AppendValues(t.history_action, &c.bytes);
        break;
      case Field::kHistoryMask:
        AppendValues(t.history_mask, &c.bytes);
        break;
      case Field::kReturn:
        AppendValues(absl::MakeConstSpan(&no_return, 1), &c.bytes);  // SetReturns fills it
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

void TransitionBuffer::SetReturns(absl::Span<const float> returns) {
  PRL_CHECK(!columns_.empty() && columns_.back().field == Field::kReturn &&
            static_cast<int64_t>(returns.size()) == rows_)
      << "setting " << returns.size() << " returns of " << rows_ << " rows";
  std::string& bytes = columns_.back().bytes;
  bytes.clear();
  AppendValues(returns, &bytes);
}

replay::InsertBatch TransitionBuffer::Batch(int64_t max_rows) const {
  const int64_t rows = std::clamp<int64_t>(max_rows, 0, rows_);
  replay::InsertBatch batch;
  batch.table = table_;
  for (const Column& c : columns_) {
    replay::InsertColumn column;
    column.name = c.name;
    column.dtype = c.dtype;
    column.shape.push_back(rows);
    column.shape.insert(column.shape.end(), c.shape.begin(), c.shape.end());
    const size_t bytes = rows_ == 0 ? 0 : c.bytes.size() / rows_ * rows;
    column.data.Append(absl::string_view(c.bytes).substr(0, bytes));
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

std::vector<float> DiscountedReturns(absl::Span<const float> rewards, double discount) {
  std::vector<float> returns(rewards.size());
  double ret = 0;
  for (size_t i = rewards.size(); i-- > 0;) {
    ret = rewards[i] + discount * ret;
    returns[i] = static_cast<float>(ret);
  }
  return returns;
}

absl::StatusOr<EpisodeBuffer> EpisodeBuffer::Create(
    std::string table, const google::protobuf::RepeatedPtrField<v1::ColumnSpec>& signature,
    int obs_dim, int action_dim, int num_envs, double discount, int64_t max_rows) {
  if (!(discount > 0 && discount <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("assignment.episode_discount: ", discount,
                                                   " is not allowed; it must be in (0, 1]"));
  }
  absl::StatusOr<TransitionBuffer> empty =
      TransitionBuffer::CreateWithReturn(std::move(table), signature, obs_dim, action_dim);
  if (!empty.ok()) return empty.status();
  return EpisodeBuffer(*std::move(empty), num_envs, discount, max_rows);
}

EpisodeBuffer::EpisodeBuffer(TransitionBuffer empty, int num_envs, double discount,
                             int64_t max_rows)
    : discount_(discount),
      max_rows_(max_rows),
      empty_(empty),
      running_(num_envs, Running{empty, {}, false}),
      finished_(std::move(empty)) {}

void EpisodeBuffer::Add(int env, const Transition& t) {
  Running& episode = running_[env];
  if (episode.too_long) return;
  if (episode.rows.rows() >= max_rows_) {
    // too long to keep: give its memory back and skip the rest of it
    episode.too_long = true;
    episode.rows = empty_;
    std::vector<float>().swap(episode.rewards);
    return;
  }
  episode.rows.Add(t);
  episode.rewards.push_back(t.reward);
}

bool EpisodeBuffer::Finish(int env) {
  Running& episode = running_[env];
  const bool keep = !episode.too_long;
  if (keep) {
    episode.rows.SetReturns(DiscountedReturns(episode.rewards, discount_));
    finished_.Append(episode.rows);
  }
  Abandon(env);
  return keep;
}

void EpisodeBuffer::Abandon(int env) {
  Running& episode = running_[env];
  episode.rows.Clear();
  episode.rewards.clear();
  episode.too_long = false;
}

}  // namespace prl::actor
