// Checkpoints of the twin-critic agents: SaveState and RestoreState (docs/learner.md, "Checkpoint
// contents"). The bytes are a magic, a format version, the resolved AlgorithmSpec and the
// dimensions, then one prl.v1.NamedTensor per StateEntry, each length-prefixed (little-endian
// uint64); the caller adds the checksum (common/checksummed_file).
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_tensor.h"
#include "learner/agent_internal.h"

namespace prl::learner::internal {
namespace {

constexpr char kMagic[] = "PRLAGENT";
constexpr uint32_t kFormatVersion = 1;

void AppendU64(uint64_t v, std::string* out) { out->append(reinterpret_cast<char*>(&v), 8); }
void AppendBytes(const std::string& bytes, std::string* out) {
  AppendU64(bytes.size(), out);
  out->append(bytes);
}

// Reads the framing of a checkpoint; every error is DATA_LOSS.
class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  bool U64(uint64_t* v) {
    if (bytes_.size() - pos_ < 8) return false;
    std::memcpy(v, bytes_.data() + pos_, 8);
    pos_ += 8;
    return true;
  }
  bool Bytes(absl::string_view* out) {
    uint64_t n;
    if (!U64(&n) || bytes_.size() - pos_ < n) return false;
    *out = absl::string_view(bytes_).substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool Skip(absl::string_view expected) {
    if (absl::string_view(bytes_).substr(pos_, expected.size()) != expected) return false;
    pos_ += expected.size();
    return true;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  const std::string& bytes_;
  size_t pos_ = 0;
};

std::string DescribeNetwork(const v1::NetworkSpec& n) {
  return absl::StrCat("hidden_sizes [", absl::StrJoin(n.hidden_sizes(), ", "), "], ",
                      v1::NetworkSpec::Activation_Name(n.activation()),
                      n.layer_norm() ? ", layer_norm" : "");
}

}  // namespace

std::vector<StateEntry> TwinCriticAgent::StateEntries() {
  return {
      {"updates", {}, &updates_},
      {"rng.train", {}, nullptr, &train_generator_},
      {"rng.act", {}, nullptr, &act_generator_},
      {"actor.params", actor_->params().flat(), nullptr, nullptr, /*learned=*/true},
      {"actor.adam.exp_avg", actor_adam_->exp_avg()},
      {"actor.adam.exp_avg_sq", actor_adam_->exp_avg_sq()},
      {"actor.adam.steps", {}, actor_adam_->mutable_steps()},
      {"critic.params", critic_->params().flat(), nullptr, nullptr, /*learned=*/true},
      {"critic_target.params", critic_target_->params().flat(), nullptr, nullptr, /*learned=*/true},
      {"critic.adam.exp_avg", critic_adam_->exp_avg()},
      {"critic.adam.exp_avg_sq", critic_adam_->exp_avg_sq()},
      {"critic.adam.steps", {}, critic_adam_->mutable_steps()},
  };
}

absl::StatusOr<std::string> TwinCriticAgent::SaveState() const {
  try {
    std::string out = kMagic;
    AppendU64(kFormatVersion, &out);
    AppendBytes(config_.algorithm.SerializeAsString(), &out);
    AppendU64(config_.obs_dim, &out);
    AppendU64(config_.act_dim, &out);
    // StateEntries hands out pointers for restoring; here they are only read.
    const std::vector<StateEntry> entries = const_cast<TwinCriticAgent*>(this)->StateEntries();
    AppendU64(entries.size(), &out);
    for (const StateEntry& e : entries) {
      at::Tensor t = e.counter != nullptr     ? at::scalar_tensor(*e.counter, at::kLong)
                     : e.generator != nullptr ? e.generator->get_state()
                                              : e.tensor;
      PRL_ASSIGN_OR_RETURN(HostTensor host, FromTorch(t));
      v1::NamedTensor proto;
      proto.set_name(e.name);
      TensorToProto(std::move(host), proto.mutable_tensor());
      AppendBytes(proto.SerializeAsString(), &out);
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot save the agent state: ", ErrorText(e)));
  }
}

absl::Status TwinCriticAgent::RestoreState(const std::string& bytes) {
  return Restore(bytes, /*learned_only=*/false);
}

absl::Status TwinCriticAgent::InitializeFrom(const std::string& bytes) {
  return Restore(bytes, /*learned_only=*/true);
}

absl::Status TwinCriticAgent::Restore(const std::string& bytes, bool learned_only) {
  // framing: everything wrong here is DATA_LOSS
  auto data_loss = [](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("agent checkpoint: ", what));
  };
  Reader reader(bytes);
  uint64_t version, obs_dim, act_dim, count;
  absl::string_view spec_bytes;
  if (!reader.Skip(kMagic)) return data_loss("not an agent checkpoint (bad magic)");
  if (!reader.U64(&version) || !reader.Bytes(&spec_bytes) || !reader.U64(&obs_dim) ||
      !reader.U64(&act_dim) || !reader.U64(&count)) {
    return data_loss("truncated header");
  }
  if (version != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("agent checkpoint: format version ", version,
                                                   " is not supported (want ", kFormatVersion,
                                                   ")"));
  }
  v1::AlgorithmSpec spec;
  if (!spec.ParseFromArray(spec_bytes.data(), static_cast<int>(spec_bytes.size()))) {
    return data_loss("cannot parse the algorithm spec");
  }
  std::map<std::string, v1::NamedTensor> stored;
  for (uint64_t i = 0; i < count; ++i) {
    absl::string_view entry;
    v1::NamedTensor proto;
    if (!reader.Bytes(&entry) ||
        !proto.ParseFromArray(entry.data(), static_cast<int>(entry.size()))) {
      return data_loss(absl::StrCat("entry ", i, " of ", count, " is truncated or corrupt"));
    }
    std::string name = proto.name();
    stored[name] = std::move(proto);
  }
  if (!reader.done()) return data_loss("trailing bytes after the last entry");

  // compatibility: INVALID_ARGUMENT, saying what differs
  auto mismatch = [](absl::string_view what, const absl::AlphaNum& have,
                     const absl::AlphaNum& want) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent checkpoint is for ", what, " ", have, "; this agent has ", want));
  };
  auto algorithm_name = [](const v1::AlgorithmSpec& s) {
    return s.has_sac() ? "sac" : s.has_td3() ? "td3" : "another algorithm";
  };
  if (spec.algorithm_case() != config_.algorithm.algorithm_case()) {
    return mismatch("algorithm", algorithm_name(spec), algorithm_name(config_.algorithm));
  }
  if (static_cast<int64_t>(obs_dim) != config_.obs_dim) {
    return mismatch("obs_dim", obs_dim, config_.obs_dim);
  }
  if (static_cast<int64_t>(act_dim) != config_.act_dim) {
    return mismatch("act_dim", act_dim, config_.act_dim);
  }
  const std::string have_net = DescribeNetwork(spec.network());
  const std::string want_net = DescribeNetwork(config_.algorithm.network());
  if (have_net != want_net) return mismatch("network", have_net, want_net);

  // check every entry before changing anything
  std::vector<StateEntry> entries = StateEntries();
  if (learned_only) {
    std::vector<StateEntry> learned;
    for (StateEntry& e : entries) {
      if (e.learned) {
        learned.push_back(std::move(e));
      } else {
        stored.erase(e.name);
      }
    }
    entries = std::move(learned);
  }
  std::vector<HostTensor> values;
  for (const StateEntry& e : entries) {
    auto it = stored.find(e.name);
    if (it == stored.end()) {
      return absl::InvalidArgumentError(absl::StrCat("agent checkpoint lacks \"", e.name, "\""));
    }
    auto host = TensorFromProto(std::move(*it->second.mutable_tensor()), e.name);
    if (!host.ok()) return data_loss(host.status().message());
    stored.erase(it);
    const DType want_dtype = e.counter != nullptr     ? DType::kInt64
                             : e.generator != nullptr ? DType::kUInt8
                                                      : DType::kFloat32;
    std::vector<int64_t> want_shape;
    if (e.generator != nullptr) want_shape = e.generator->get_state().sizes().vec();
    if (e.tensor.defined()) want_shape = e.tensor.sizes().vec();
    if (host->dtype() != want_dtype || host->shape() != want_shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("agent checkpoint entry \"", e.name, "\" is ", DTypeName(host->dtype()), " ",
                       ShapeString(host->shape()), "; this agent needs ", DTypeName(want_dtype),
                       " ", ShapeString(want_shape)));
    }
    values.push_back(*std::move(host));
  }
  if (!stored.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent checkpoint has an unexpected entry \"", stored.begin()->first, "\""));
  }
  try {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < entries.size(); ++i) {
      const StateEntry& e = entries[i];
      at::Tensor value = ToTorch(values[i].view());
      if (e.counter != nullptr) {
        *e.counter = value.item<int64_t>();
      } else if (e.generator != nullptr) {
        e.generator->set_state(value);
      } else {
        e.tensor.copy_(value);
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot restore the agent state: ", ErrorText(e)));
  }
  return absl::OkStatus();
}

}  // namespace prl::learner::internal
