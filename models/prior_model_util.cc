#include "models/prior_model_util.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>
#include <utility>

#include "ATen/ATen.h"
#include "ATen/CPUGeneratorImpl.h"
#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "c10/core/InferenceMode.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "common/torch_tensor.h"
#include "models/gemm.h"
#include "models/network_spec.h"

namespace prl::models::prior_util {
namespace {

constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEps = 1e-8;

ParameterBlock::Init LinearInit(int64_t fan_in) {
  return {ParameterBlock::Init::kUniform, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

// "[B, 10, 3]" with -1 printed as B.
std::string WantedShape(const std::vector<int64_t>& want) {
  std::vector<std::string> dims;
  dims.reserve(want.size());
  for (int64_t d : want) dims.push_back(d < 0 ? "B" : absl::StrCat(d));
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

}  // namespace

LinearParams DeclareLinear(ParameterBlock* block, const std::string& prefix, int64_t in,
                           int64_t out) {
  return {block->Declare(prefix + ".weight", {out, in}, LinearInit(in)),
          block->Declare(prefix + ".bias", {out}, LinearInit(in))};
}

at::Tensor ApplyLinear(const ParameterBlock& block, const LinearParams& p, const at::Tensor& x) {
  return Linear(x, block.param(p.weight), block.param(p.bias), kGemm);
}

GaussianNet::GaussianNet(ParameterBlock* block, const std::string& prefix, int64_t input_dim,
                         int64_t latent_dim, const v1::NetworkSpec& resolved)
    : trunk(block, prefix + ".trunk", input_dim, resolved, /*ensemble=*/1),
      mean(DeclareLinear(block, prefix + ".mean", trunk.output_dim(), latent_dim)),
      log_std(DeclareLinear(block, prefix + ".log_std", trunk.output_dim(), latent_dim)) {}

DiagonalGaussian GaussianNet::Forward(const ParameterBlock& block, const at::Tensor& x) const {
  at::Tensor h = trunk.Forward(block, x, kGemm);
  return {ApplyLinear(block, mean, h),
          ApplyLinear(block, log_std, h).clamp(kLogStdMin, kLogStdMax)};
}

namespace {

// The offset of a parameter in the block's flat buffer.
int64_t OffsetOf(const ParameterBlock& block, int index) {
  return block.param(index).data_ptr<float>() - block.flat().data_ptr<float>();
}

dense::LinearSlot Slot(const ParameterBlock& block, int weight, int bias) {
  const at::Tensor& w = block.param(weight);
  return {OffsetOf(block, weight), OffsetOf(block, bias), w.size(1), w.size(0)};
}

std::optional<dense::DenseMlp> DenseNet(const ParameterBlock& block, const MlpTrunk& trunk,
                                        const std::vector<LinearParams>& heads) {
  if (!trunk.PlainRelu() || trunk.linear_layers().empty() || !block.flat().is_cpu() ||
      block.flat().scalar_type() != at::kFloat) {
    return std::nullopt;
  }
  std::vector<dense::LinearSlot> layers, outputs;
  for (const MlpTrunk::LinearIndices& l : trunk.linear_layers()) {
    layers.push_back(Slot(block, l.weight, l.bias));
  }
  for (const LinearParams& h : heads) outputs.push_back(Slot(block, h.weight, h.bias));
  return dense::DenseMlp(std::move(layers), std::move(outputs));
}

}  // namespace

std::optional<dense::DenseMlp> GaussianNet::Dense(const ParameterBlock& block) const {
  return DenseNet(block, trunk, {mean, log_std});
}

MeanNet::MeanNet(ParameterBlock* block, const std::string& prefix, int64_t input_dim,
                 int64_t output_dim, const v1::NetworkSpec& resolved)
    : trunk(block, prefix + ".trunk", input_dim, resolved, /*ensemble=*/1),
      mean(DeclareLinear(block, prefix + ".mean", trunk.output_dim(), output_dim)) {}

std::optional<dense::DenseMlp> MeanNet::Dense(const ParameterBlock& block) const {
  return DenseNet(block, trunk, {mean});
}

at::Tensor MeanNet::Forward(const ParameterBlock& block, const at::Tensor& x) const {
  return ApplyLinear(block, mean, trunk.Forward(block, x, kGemm));
}

absl::Status CheckDims(const std::string& prefix, absl::string_view act_name, int obs_dim,
                       int act_dim, int horizon, int latent_dim, const DimLimits& limits) {
  if (obs_dim < 1 || obs_dim > limits.max_dim) {
    return FieldRangeError(prefix + "obs_dim", obs_dim, 1, limits.max_dim);
  }
  if (act_dim < 1 || act_dim > limits.max_dim) {
    return FieldRangeError(absl::StrCat(prefix, act_name), act_dim, 1, limits.max_dim);
  }
  if (horizon < 1 || horizon > limits.max_horizon) {
    return FieldRangeError(prefix + "horizon", horizon, 1, limits.max_horizon);
  }
  if (latent_dim < 1 || latent_dim > limits.max_latent_dim) {
    return FieldRangeError(prefix + "latent_dim", latent_dim, 1, limits.max_latent_dim);
  }
  return absl::OkStatus();
}

absl::Status ResolveTrainingOptions(double beta, double lr, int default_layers, int default_size,
                                    c10::Device device, v1::NetworkSpec* network) {
  if (!std::isfinite(beta) || beta < 0) return FieldError("options.beta", beta, "finite and >= 0");
  if (!std::isfinite(lr) || lr <= 0) return FieldError("options.lr", lr, "finite and > 0");
  if (network->hidden_sizes().empty()) {
    for (int i = 0; i < default_layers; ++i) network->add_hidden_sizes(default_size);
  }
  PRL_RETURN_IF_ERROR(ResolveNetworkSpec("options.network", network));
  return CheckDevice("options.device", device);
}

absl::Status CheckDevice(absl::string_view field, c10::Device device) {
  if (device.is_cpu()) return absl::OkStatus();
  if (device.is_cuda() && at::hasCUDA() &&
      (!device.has_index() || device.index() < static_cast<int>(at::getNumGPUs()))) {
    return absl::OkStatus();
  }
  return FieldError(field, device.str(), "cpu or a CUDA device of this build and machine");
}

absl::Status CheckInput(absl::string_view field, const at::Tensor& t,
                        const std::vector<int64_t>& want, bool require_finite) {
  const std::string allowed = absl::StrCat("a float32 ", WantedShape(want), " tensor, B >= 1");
  if (!t.defined()) return FieldError(field, "an undefined tensor", allowed);
  bool fits = t.scalar_type() == at::kFloat && t.dim() == static_cast<int64_t>(want.size());
  for (size_t i = 0; fits && i < want.size(); ++i) {
    fits = want[i] < 0 ? t.size(i) >= 1 : t.size(i) == want[i];
  }
  if (!fits) {
    return FieldError(field,
                      absl::StrCat("a ", std::string(c10::toString(t.scalar_type())), " ",
                                   ShapeString(t.sizes().vec()), " tensor"),
                      allowed);
  }
  if (require_finite && !at::isfinite(t).all().item<bool>()) {
    return FieldError(field, "a tensor with NaN or infinite values", "finite");
  }
  return absl::OkStatus();
}

absl::Status TorchError(absl::string_view what, const c10::Error& e) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

absl::StatusOr<int64_t> Hyperparameter(const ModelArtifact& artifact, const std::string& key,
                                       int64_t min, int64_t max) {
  const std::string field = absl::StrCat("hyperparameters[\"", key, "\"]");
  auto it = artifact.hyperparameters.find(key);
  if (it == artifact.hyperparameters.end()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  }
  if (it->second < min || it->second > max) return FieldRangeError(field, it->second, min, max);
  return it->second;
}

void WriteNetwork(const v1::NetworkSpec& network, std::map<std::string, int64_t>* hp) {
  (*hp)["network.hidden_layers"] = network.hidden_sizes_size();
  for (int i = 0; i < network.hidden_sizes_size(); ++i) {
    (*hp)[absl::StrCat("network.hidden_sizes.", i)] = network.hidden_sizes(i);
  }
  (*hp)["network.activation"] = network.activation();
  (*hp)["network.layer_norm"] = network.layer_norm() ? 1 : 0;
}

absl::StatusOr<v1::NetworkSpec> ReadNetwork(const ModelArtifact& artifact) {
  v1::NetworkSpec network;
  PRL_ASSIGN_OR_RETURN(int64_t layers,
                       Hyperparameter(artifact, "network.hidden_layers", 1, kMaxHiddenLayers));
  for (int64_t i = 0; i < layers; ++i) {
    PRL_ASSIGN_OR_RETURN(
        int64_t size,
        Hyperparameter(artifact, absl::StrCat("network.hidden_sizes.", i), 1, kMaxHiddenSize));
    network.add_hidden_sizes(static_cast<int32_t>(size));
  }
  PRL_ASSIGN_OR_RETURN(int64_t activation,
                       Hyperparameter(artifact, "network.activation", 1, INT32_MAX));
  if (!v1::NetworkSpec::Activation_IsValid(static_cast<int>(activation))) {
    return FieldError("hyperparameters[\"network.activation\"]", activation,
                      "a NetworkSpec.Activation value");
  }
  network.set_activation(static_cast<v1::NetworkSpec::Activation>(activation));
  PRL_ASSIGN_OR_RETURN(int64_t layer_norm, Hyperparameter(artifact, "network.layer_norm", 0, 1));
  network.set_layer_norm(layer_norm == 1);
  return network;
}

ModelArtifact TranslatorArtifactBase(v1::ModelInfo info, int64_t obs_dim, int64_t action_dim,
                                     int64_t context_dim, const v1::NetworkSpec& network) {
  info.set_kind(v1::PRIOR_KIND_ACTION_TRANSLATOR);
  info.set_obs_dim(static_cast<int32_t>(obs_dim));
  info.set_action_dim(static_cast<int32_t>(action_dim));
  info.set_context_dim(static_cast<int32_t>(context_dim));
  info.set_latent_dim(0);
  info.set_horizon(1);
  info.set_state_conditioned_decoder(false);
  info.clear_methods();
  info.add_methods("Translate");
  ModelArtifact artifact;
  artifact.info = std::move(info);
  WriteNetwork(network, &artifact.hyperparameters);
  return artifact;
}

absl::Status StoreParameters(const ParameterBlock& block, ModelArtifact* artifact) {
  for (int i = 0; i < block.size(); ++i) {
    PRL_ASSIGN_OR_RETURN(HostTensor host, FromTorch(block.param(i).detach()));
    artifact->tensors.emplace_back(block.name(i), std::move(host));
  }
  return absl::OkStatus();
}

absl::Status LoadParameters(const ModelArtifact& artifact, absl::string_view model,
                            ParameterBlock* block) {
  std::map<std::string, at::Tensor> expected;
  for (int i = 0; i < block->size(); ++i) expected[block->name(i)] = block->param(i);
  std::set<std::string> loaded;
  try {
    at::NoGradGuard no_grad;
    for (const auto& [name, host] : artifact.tensors) {
      const std::string field = absl::StrCat("tensors[\"", name, "\"]");
      auto it = expected.find(name);
      if (it == expected.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ": not a parameter of this ", model, " (it has ",
            absl::StrJoin(expected, ", ", [](std::string* out, const auto& e) { *out += e.first; }),
            ")"));
      }
      if (!loaded.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": appears twice"));
      }
      TensorSpec spec;
      spec.name = field;
      spec.dtype = DType::kFloat32;
      spec.shape = it->second.sizes().vec();
      spec.require_finite = true;
      PRL_RETURN_IF_ERROR(CheckTensor(host.view(), spec));
      it->second.copy_(ToTorch(host.view()));
    }
  } catch (const c10::Error& e) {
    return TorchError(absl::StrCat("cannot load the ", model, "'s weights"), e);
  }
  for (const auto& e : expected) {
    if (loaded.count(e.first) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensors[\"", e.first, "\"]: missing"));
    }
  }
  return absl::OkStatus();
}

FlatAdam::FlatAdam(const ParameterBlock& block)
    : m_(at::zeros_like(block.flat())), v_(at::zeros_like(block.flat())) {}

void FlatAdam::Step(ParameterBlock* block, double lr) {
  Step(block->flat(), block->flat_grad(), lr);
}

void FlatAdam::Restore(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, int64_t steps) {
  at::NoGradGuard no_grad;
  m_.copy_(exp_avg);
  v_.copy_(exp_avg_sq);
  steps_ = steps;
}

void FlatAdam::Step(const at::Tensor& param, const at::Tensor& g, double lr) {
  ++steps_;
  AdamStepInPlace(param, m_, v_, g, lr, kAdamBeta1, kAdamBeta2, kAdamEps, steps_);
}

absl::StatusOr<WindowBatch> PrepareWindows(const WindowBatch& batch, int horizon, int obs_dim,
                                           int act_dim, c10::Device device) {
  PRL_RETURN_IF_ERROR(CheckInput("batch.obs", batch.obs, {-1, horizon, obs_dim}, true));
  PRL_RETURN_IF_ERROR(
      CheckInput("batch.actions", batch.actions, {batch.obs.size(0), horizon, act_dim}, true));
  return WindowBatch{batch.obs.to(device), batch.actions.to(device)};
}

namespace {

// Evaluate draws its ε from a generator seeded with seed + this, afresh on every call.
constexpr uint64_t kEvaluateSeedOffset = 0x9E3779B97F4A7C15ull;

// The terms' values, copied to the host at once.
Losses ToLosses(const LossTerms& terms) {
  std::vector<at::Tensor> values;
  values.reserve(terms.size());
  for (const auto& term : terms) values.push_back(term.second);
  at::Tensor host = at::stack(values).detach().to(at::kCPU, at::kDouble);
  const double* p = host.data_ptr<double>();
  Losses losses;
  for (size_t i = 0; i < terms.size(); ++i) losses[terms[i].first] = p[i];
  return losses;
}

at::Tensor Noise(int64_t rows, int latent_dim, at::Generator& generator, c10::Device device) {
  return at::randn({rows, latent_dim}, generator, at::TensorOptions().dtype(at::kFloat)).to(device);
}

}  // namespace

int TrainingShards(int64_t rows, int64_t network_rows_per_row, c10::Device device) {
  if (!device.is_cpu()) return 1;
  const int64_t by_rows = rows * std::max<int64_t>(1, network_rows_per_row) / kMinShardNetworkRows;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), by_rows)));
}

namespace {

// The first non-finite term of `losses` as ShardedGradient's error; OK when all are finite.
absl::Status CheckFinite(absl::string_view what, const Losses& losses) {
  for (const auto& [name, value] : losses) {
    if (!std::isfinite(value)) {
      return absl::InternalError(absl::StrCat(what, " training step: ", name, " is ", value,
                                              "; the parameters were not updated"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Losses> ShardedGradient(absl::string_view what, ParameterBlock* block, int64_t rows,
                                       int64_t network_rows_per_row, c10::Device device,
                                       const RowLoss& loss) {
  block->ZeroGrad();
  const int shards = TrainingShards(rows, network_rows_per_row, device);
  if (shards == 1) {
    LossTerms terms = loss(*block, 0, rows);
    Losses losses = ToLosses(terms);
    PRL_RETURN_IF_ERROR(CheckFinite(what, losses));
    terms.front().second.backward();
    return losses;
  }
  std::vector<ParameterBlock*> params(shards, block);
  for (int s = 1; s < shards; ++s) {
    params[s] = &block->GradientShard(s);
    params[s]->ZeroGrad();
  }
  const auto begin = [&](int64_t s) { return rows * s / shards; };
  std::vector<Losses> shard_losses(shards);
  // one shard per thread; inside at::parallel_for the operators run single-threaded
  at::parallel_for(0, shards, 1, [&](int64_t first, int64_t last) {
    for (int64_t s = first; s < last; ++s) {
      const int64_t count = begin(s + 1) - begin(s);
      LossTerms terms = loss(*params[s], begin(s), count);
      shard_losses[s] = ToLosses(terms);
      (terms.front().second * (static_cast<double>(count) / static_cast<double>(rows))).backward();
    }
  });
  Losses losses;
  for (int s = 0; s < shards; ++s) {
    const double weight = static_cast<double>(begin(s + 1) - begin(s)) / static_cast<double>(rows);
    for (const auto& [name, value] : shard_losses[s]) losses[name] += weight * value;
  }
  PRL_RETURN_IF_ERROR(CheckFinite(what, losses));
  at::NoGradGuard no_grad;
  for (int s = 1; s < shards; ++s) block->flat_grad().add_(params[s]->flat_grad());
  return losses;
}

absl::StatusOr<Losses> VaeTrainStep(absl::string_view what, const VaeTraining& training,
                                    int64_t rows, const VaeRowLoss& loss) {
  try {
    const at::Tensor noise = Noise(rows, training.latent_dim, *training.generator, training.device);
    PRL_ASSIGN_OR_RETURN(
        Losses losses,
        ShardedGradient(what, training.block, rows, training.network_rows_per_row, training.device,
                        [&](const ParameterBlock& params, int64_t begin, int64_t count) {
                          return loss(params, noise.narrow(0, begin, count), begin, count);
                        }));
    if (training.adam != nullptr) training.adam->Step(training.block, training.lr);
    return losses;
  } catch (const c10::Error& e) {
    return TorchError(absl::StrCat(what, " training step"), e);
  }
}

bool DirectStepAvailable(c10::Device device) { return device.is_cpu() && FastSgemmAvailable(); }

absl::StatusOr<Losses> DirectVaeTrainStep(absl::string_view what, const VaeTraining& training,
                                          const WindowBatch& batch,
                                          const DirectRowGradient& gradient,
                                          std::vector<std::vector<float>>* shard_grads) {
  try {
    const int64_t rows = batch.obs.size(0);
    const at::Tensor obs = batch.obs.contiguous(), actions = batch.actions.contiguous();
    const int64_t obs_row = obs.numel() / rows, action_row = actions.numel() / rows;
    const at::Tensor noise =
        Noise(rows, training.latent_dim, *training.generator, at::kCPU).contiguous();
    const float* eps = noise.data_ptr<float>();
    ParameterBlock* block = training.block;
    const int64_t numel = block->numel();
    const int shards = TrainingShards(rows, training.network_rows_per_row, at::kCPU);
    if (static_cast<int>(shard_grads->size()) < shards - 1) shard_grads->resize(shards - 1);
    std::vector<float*> grads(shards);
    grads[0] = block->flat_grad().data_ptr<float>();
    for (int s = 1; s < shards; ++s) {
      std::vector<float>& buffer = (*shard_grads)[s - 1];
      buffer.resize(static_cast<size_t>(numel));
      grads[s] = buffer.data();
    }
    const auto begin = [&](int64_t s) { return rows * s / shards; };
    std::vector<absl::StatusOr<TermValues>> terms(shards, TermValues());
    const auto run = [&](int64_t s) {
      const int64_t first = begin(s), count = begin(s + 1) - first;
      std::fill_n(grads[s], numel, 0.0f);
      terms[s] = gradient(static_cast<int>(s), obs.data_ptr<float>() + first * obs_row,
                          actions.data_ptr<float>() + first * action_row,
                          eps + first * training.latent_dim, count,
                          static_cast<float>(static_cast<double>(count) / rows), grads[s]);
    };
    if (shards == 1) {
      run(0);
    } else {
      // one shard per thread; inside at::parallel_for oneDNN's products run single-threaded
      at::parallel_for(0, shards, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) run(s);
      });
    }
    Losses losses;
    for (int s = 0; s < shards; ++s) {
      if (!terms[s].ok()) return terms[s].status();
      const double weight = static_cast<double>(begin(s + 1) - begin(s)) / rows;
      for (const auto& [name, value] : *terms[s]) losses[name] += weight * value;
    }
    PRL_RETURN_IF_ERROR(CheckFinite(what, losses));
    for (int s = 1; s < shards; ++s) {
      float* total = grads[0];
      const float* part = grads[s];
      for (int64_t i = 0; i < numel; ++i) total[i] += part[i];
    }
    if (training.adam != nullptr) training.adam->Step(block, training.lr);
    return losses;
  } catch (const c10::Error& e) {
    return TorchError(absl::StrCat(what, " training step"), e);
  }
}

absl::StatusOr<Losses> VaeEvaluate(absl::string_view what, int latent_dim, c10::Device device,
                                   int64_t seed, int64_t rows,
                                   const std::function<LossTerms(const at::Tensor&)>& loss) {
  try {
    c10::InferenceMode inference;
    at::Generator generator =
        at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed) + kEvaluateSeedOffset);
    return ToLosses(loss(Noise(rows, latent_dim, generator, device)));
  } catch (const c10::Error& e) {
    return TorchError(absl::StrCat(what, " evaluation"), e);
  }
}

namespace {

constexpr char kExpAvg[] = "training.adam.exp_avg";
constexpr char kExpAvgSq[] = "training.adam.exp_avg_sq";
constexpr char kGenerator[] = "training.generator";
constexpr char kSteps[] = "training.adam.steps";

}  // namespace

absl::Status AppendTrainingState(const FlatAdam& adam, const at::Generator* generator,
                                 ModelArtifact* artifact) {
  try {
    PRL_ASSIGN_OR_RETURN(HostTensor m, FromTorch(adam.exp_avg().detach()));
    PRL_ASSIGN_OR_RETURN(HostTensor v, FromTorch(adam.exp_avg_sq().detach()));
    artifact->tensors.emplace_back(kExpAvg, std::move(m));
    artifact->tensors.emplace_back(kExpAvgSq, std::move(v));
    if (generator != nullptr) {
      at::Generator shared = *generator;  // a handle to the same generator
      at::Tensor bytes;
      {
        std::lock_guard<std::mutex> lock(shared.mutex());
        bytes = shared.get_state();
      }
      PRL_ASSIGN_OR_RETURN(HostTensor state, FromTorch(bytes.to(at::kFloat)));
      artifact->tensors.emplace_back(kGenerator, std::move(state));
    }
  } catch (const c10::Error& e) {
    return TorchError("saving the training state", e);
  }
  artifact->hyperparameters[kSteps] = adam.steps();
  return absl::OkStatus();
}

absl::Status RestoreTrainingState(const ModelArtifact& state, absl::string_view model,
                                  ParameterBlock* block, FlatAdam* adam, at::Generator* generator) {
  const HostTensor* m = state.Find(kExpAvg);
  const HostTensor* v = state.Find(kExpAvgSq);
  const HostTensor* g = state.Find(kGenerator);
  for (const auto& [name, tensor] : {std::pair{kExpAvg, m}, std::pair{kExpAvgSq, v}}) {
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tensors[\"", name, "\"]: missing"));
    }
    if (tensor->shape() != std::vector<int64_t>{block->numel()}) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors[\"", name, "\"]: shape ", ShapeString(tensor->shape()),
                       " does not fit this ", model, "'s ", block->numel(), " parameters"));
    }
  }
  if (generator != nullptr && g == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensors[\"", kGenerator, "\"]: missing"));
  }
  PRL_ASSIGN_OR_RETURN(int64_t steps, Hyperparameter(state, kSteps, 0, INT64_MAX));
  ModelArtifact weights;
  weights.info = state.info;
  weights.hyperparameters = state.hyperparameters;
  for (const auto& [name, tensor] : state.tensors) {
    if (name.rfind("training.", 0) != 0) weights.tensors.emplace_back(name, tensor);
  }
  try {
    at::Tensor generator_state;
    if (generator != nullptr) generator_state = ToTorch(g->view()).to(at::kByte);
    PRL_RETURN_IF_ERROR(LoadParameters(weights, model, block));
    adam->Restore(ToTorch(m->view()), ToTorch(v->view()), steps);
    if (generator != nullptr) {
      std::lock_guard<std::mutex> lock(generator->mutex());
      generator->set_state(generator_state);
    }
  } catch (const c10::Error& e) {
    return TorchError(absl::StrCat("restoring the ", model, "'s training state"), e);
  }
  return absl::OkStatus();
}

}  // namespace prl::models::prior_util
