#include "models/torch_prior_inference.h"

#include <atomic>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "ATen/Parallel.h"
#include "ATen/core/grad_mode.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "c10/core/InferenceMode.h"
#include "common/regular_file.h"
#include "common/status_macros.h"
#include "common/torch_tensor.h"
#include "models/cvae_model.h"
#include "models/mcat_model.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"
#include "torch/script.h"
#include "torch/version.h"

namespace prl::models {
namespace {

std::string ErrorText(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

absl::StatusOr<at::Device> ResolveDevice(const std::string& name) {
  if (name.empty() || name == "auto") {
    return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  }
  if (name == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (name != "cuda") {
    if (!absl::StartsWith(name, "cuda:") || !absl::SimpleAtoi(name.substr(5), &index) ||
        index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device: \"", name, "\" is not allowed; it must be auto, cpu, cuda or cuda:N"));
    }
  }
  if (!at::hasCUDA() || index >= static_cast<int>(at::getNumGPUs())) {
    return absl::FailedPreconditionError(absl::StrCat("device: \"", name,
                                                      "\" is not available; this process sees ",
                                                      at::getNumGPUs(), " CUDA devices"));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

// The intra-op threads SetInferenceThreads asked for (0: LibTorch's default). With OpenMP the
// setting is per thread, and calls arrive on whichever thread the caller (a gRPC handler, an
// actor) runs, so each thread applies it before its first call into LibTorch.
std::atomic<int> inference_threads{0};

void ApplyInferenceThreads() {
  thread_local int applied = 0;
  const int want = inference_threads.load(std::memory_order_relaxed);
  if (want > 0 && applied != want) {
    at::set_num_threads(want);
    applied = want;
  }
}

// The inputs as CPU torch tensors (views would alias the HostTensors' buffers; copies keep
// ownership simple and cost little next to the model).
std::vector<at::Tensor> ToTorchAll(const std::vector<HostTensor>& inputs) {
  std::vector<at::Tensor> out;
  out.reserve(inputs.size());
  for (const HostTensor& t : inputs) out.push_back(ToTorch(t.view()));
  return out;
}

absl::StatusOr<std::vector<HostTensor>> FromTorchAll(const std::vector<at::Tensor>& outputs) {
  std::vector<HostTensor> out;
  out.reserve(outputs.size());
  for (const at::Tensor& t : outputs) {
    PRL_ASSIGN_OR_RETURN(HostTensor h, FromTorch(t.to(at::kCPU, at::kFloat).contiguous()));
    out.push_back(std::move(h));
  }
  return out;
}

v1::ModelInfo ServedInfo(v1::ModelInfo info, const PriorLoadOptions& options) {
  if (!options.name.empty()) info.set_name(options.name);
  if (options.version > 0) info.set_version(options.version);
  return info;
}

// SKILL_VAE (the closed-loop decoder, one action per call, and the learned skill prior) and
// CVAE (the open-loop decoder, k actions per call, and EAP's state prior or N(0, I)).
template <typename Model>
class LatentPrior final : public PriorInference {
 public:
  LatentPrior(v1::ModelInfo info, std::unique_ptr<Model> model)
      : info_(std::move(info)), model_(std::move(model)) {}
  const v1::ModelInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<HostTensor>> Run(
      PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    PRL_ASSIGN_OR_RETURN(const int64_t rows, CheckPriorInputs(info_, method, inputs));
    ApplyInferenceThreads();
    std::vector<at::Tensor> in = ToTorchAll(inputs);
    c10::InferenceMode inference;
    if (method == PriorMethod::kDecode) {
      PRL_ASSIGN_OR_RETURN(at::Tensor actions, model_->Decode(in[1], in[0]));
      return FromTorchAll(
          {actions.reshape({rows, DecodeStepsPerCall(info_), int64_t{info_.action_dim()}})});
    }
    PRL_ASSIGN_OR_RETURN(DiagonalGaussian prior, model_->Prior(in[0]));
    return FromTorchAll({prior.mean, prior.log_std});
  }

 private:
  const v1::ModelInfo info_;
  const std::unique_ptr<Model> model_;
};

// REAL_NVP_FLOW: Forward and Inverse.
class FlowPrior final : public PriorInference {
 public:
  FlowPrior(v1::ModelInfo info, std::unique_ptr<RealNvpFlow> flow)
      : info_(std::move(info)), flow_(std::move(flow)) {}
  const v1::ModelInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<HostTensor>> Run(
      PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    PRL_RETURN_IF_ERROR(CheckPriorInputs(info_, method, inputs).status());
    ApplyInferenceThreads();
    std::vector<at::Tensor> in = ToTorchAll(inputs);
    c10::InferenceMode inference;
    absl::StatusOr<RealNvpFlow::Result> result = method == PriorMethod::kForward
                                                     ? flow_->Forward(in[0], in[1])
                                                     : flow_->Inverse(in[0], in[1]);
    if (!result.ok()) return result.status();
    return FromTorchAll({result->value, result->log_det});
  }

 private:
  const v1::ModelInfo info_;
  const std::unique_ptr<RealNvpFlow> flow_;
};

// ACTION_TRANSLATOR: MCAT's action translator H (Translate).
class TranslatorPrior final : public PriorInference {
 public:
  TranslatorPrior(v1::ModelInfo info, std::unique_ptr<TranslatorModel> model)
      : info_(std::move(info)), model_(std::move(model)) {}
  const v1::ModelInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<HostTensor>> Run(
      PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    PRL_RETURN_IF_ERROR(CheckPriorInputs(info_, method, inputs).status());
    ApplyInferenceThreads();
    // state, source_action, source_context, target_context (the contexts [B, 0] for a
    // context-free translator)
    std::vector<at::Tensor> in = ToTorchAll(inputs);
    at::Tensor actions;
    try {
      c10::InferenceMode inference;
      actions = model_->Translate(in[0], in[1], in[2], in[3]);
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("Translate on model ", DescribeModel(info_), " failed: ", ErrorText(e)));
    }
    return FromTorchAll({actions});
  }

 private:
  const v1::ModelInfo info_;
  const std::unique_ptr<TranslatorModel> model_;
};

// The TorchScript method behind each PriorService method.
const char* ScriptMethodName(PriorMethod method) {
  switch (method) {
    case PriorMethod::kDecode:
      return "decode";
    case PriorMethod::kPrior:
      return "prior";
    case PriorMethod::kForward:
      return "flow_forward";
    case PriorMethod::kInverse:
      return "flow_inverse";
    case PriorMethod::kTranslate:
      return "translate";
  }
  return "";
}

class ScriptPrior final : public PriorInference {
 public:
  ScriptPrior(v1::ModelInfo info, torch::jit::Module module, at::Device device)
      : info_(std::move(info)), module_(std::move(module)), device_(device) {}
  const v1::ModelInfo& info() const override { return info_; }

  absl::StatusOr<std::vector<HostTensor>> Run(
      PriorMethod method, const std::vector<HostTensor>& inputs) const override {
    PRL_ASSIGN_OR_RETURN(const int64_t rows, CheckPriorInputs(info_, method, inputs));
    const char* name = ScriptMethodName(method);
    ApplyInferenceThreads();
    std::vector<at::Tensor> outputs;
    try {
      std::vector<c10::IValue> args;
      for (const HostTensor& t : inputs) args.emplace_back(ToTorch(t.view()).to(device_));
      at::NoGradGuard no_grad;
      // Methods of a scripted module are safe to call concurrently (they do not mutate it);
      // find_method is a const lookup on a copy of the module handle.
      torch::jit::Module module = module_;
      c10::IValue result = module.get_method(name)(std::move(args));
      if (result.isTensor()) {
        outputs.push_back(result.toTensor());
      } else if (result.isTuple()) {
        for (const c10::IValue& v : result.toTupleRef().elements()) {
          if (!v.isTensor()) {
            return absl::InternalError(absl::StrCat("TorchScript method ", name, " of model ",
                                                    DescribeModel(info_),
                                                    " returned a tuple with a non-tensor"));
          }
          outputs.push_back(v.toTensor());
        }
      } else {
        return absl::InternalError(absl::StrCat("TorchScript method ", name, " of model ",
                                                DescribeModel(info_), " returned a ",
                                                result.tagKind(), ", not tensors"));
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("TorchScript method ", name, " of model ",
                                              DescribeModel(info_), " failed: ", ErrorText(e)));
    }
    PRL_RETURN_IF_ERROR(CheckOutputs(method, rows, outputs));
    return FromTorchAll(outputs);
  }

 private:
  // The shapes the contract promises, so a misbehaving module cannot hand a caller rows that
  // are not its own.
  absl::Status CheckOutputs(PriorMethod method, int64_t rows,
                            const std::vector<at::Tensor>& outputs) const {
    std::vector<std::vector<int64_t>> want;
    const int64_t a = info_.action_dim();
    switch (method) {
      case PriorMethod::kDecode:
        want = {{rows, info_.horizon(), a}};
        break;
      case PriorMethod::kPrior:
        want = {{rows, info_.latent_dim()}, {rows, info_.latent_dim()}};
        break;
      case PriorMethod::kForward:
      case PriorMethod::kInverse:
        want = {{rows, a}, {rows}};
        break;
      case PriorMethod::kTranslate:
        want = {{rows, a}};
        break;
    }
    const char* name = ScriptMethodName(method);
    if (outputs.size() != want.size()) {
      return absl::InternalError(absl::StrCat("TorchScript method ", name, " of model ",
                                              DescribeModel(info_), " returned ", outputs.size(),
                                              " tensors; the contract is ", want.size()));
    }
    for (size_t i = 0; i < want.size(); ++i) {
      std::vector<int64_t> have(outputs[i].sizes().begin(), outputs[i].sizes().end());
      if (have != want[i] || !outputs[i].is_floating_point()) {
        return absl::InternalError(
            absl::StrCat("TorchScript method ", name, " of model ", DescribeModel(info_),
                         " returned output ", i, " of shape ", ShapeString(have), " (",
                         std::string(c10::toString(outputs[i].scalar_type())),
                         "); the contract is a float tensor of shape ", ShapeString(want[i])));
      }
    }
    return absl::OkStatus();
  }

  const v1::ModelInfo info_;
  const torch::jit::Module module_;
  const at::Device device_;
};

absl::StatusOr<int64_t> IntAttribute(const torch::jit::Module& module, const char* name,
                                     absl::string_view source, std::optional<int64_t> fallback) {
  if (!module.hasattr(name)) {
    if (fallback.has_value()) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": the TorchScript module has no attribute '", name,
        "'; a PRL prior module needs int attributes obs_dim, action_dim, latent_dim and horizon "
        "(see LoadModelRequest in proto/prior.proto)"));
  }
  c10::IValue v = module.attr(name);
  if (v.isBool()) return v.toBool() ? 1 : 0;
  if (!v.isInt()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": attribute '", name, "' is a ", v.tagKind(), "; it must be an int"));
  }
  return v.toInt();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PriorInference>> PriorFromArtifact(const ModelArtifact& artifact,
                                                                  const PriorLoadOptions& options) {
  PRL_ASSIGN_OR_RETURN(at::Device device, ResolveDevice(options.device));
  v1::ModelInfo info = ServedInfo(artifact.info, options);
  switch (artifact.info.kind()) {
    case v1::PRIOR_KIND_SKILL_VAE: {
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<SkillModel> model,
                           SkillModel::FromArtifact(artifact, device));
      return std::make_unique<LatentPrior<SkillModel>>(std::move(info), std::move(model));
    }
    case v1::PRIOR_KIND_CVAE: {
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<CvaeModel> model,
                           CvaeModel::FromArtifact(artifact, device));
      return std::make_unique<LatentPrior<CvaeModel>>(std::move(info), std::move(model));
    }
    case v1::PRIOR_KIND_REAL_NVP_FLOW: {
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<RealNvpFlow> flow,
                           RealNvpFlow::FromArtifact(artifact, device));
      return std::make_unique<FlowPrior>(std::move(info), std::move(flow));
    }
    case v1::PRIOR_KIND_ACTION_TRANSLATOR: {
      PRL_ASSIGN_OR_RETURN(std::unique_ptr<TranslatorModel> model,
                           TranslatorModel::FromArtifact(artifact, device.str()));
      // what this class answers, whatever the artifact lists
      info.clear_methods();
      info.add_methods(std::string(PriorMethodName(PriorMethod::kTranslate)));
      return std::make_unique<TranslatorPrior>(std::move(info), std::move(model));
    }
    default:
      return absl::UnimplementedError(absl::StrCat(
          "artifact ", DescribeModel(artifact.info), ": kind ",
          v1::PriorKind_Name(artifact.info.kind()),
          " cannot be served by this build; it serves PRIOR_KIND_SKILL_VAE, PRIOR_KIND_CVAE, "
          "PRIOR_KIND_REAL_NVP_FLOW, PRIOR_KIND_ACTION_TRANSLATOR and TorchScript modules"));
  }
}

bool LooksLikeTorchScript(absl::string_view bytes) {
  return absl::StartsWith(bytes, absl::string_view("PK\x03\x04", 4));
}

absl::StatusOr<std::unique_ptr<PriorInference>> PriorFromTorchScript(
    absl::string_view bytes, absl::string_view source, const PriorLoadOptions& options) {
  if (options.name.empty() || options.version < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": a TorchScript module needs the name and version to serve it "
                     "under (it does not store them)"));
  }
  PRL_ASSIGN_OR_RETURN(at::Device device, ResolveDevice(options.device));
  torch::jit::Module module;
  try {
    std::istringstream in{std::string(bytes)};
    module = torch::jit::load(in, device);
    module.eval();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a TorchScript module LibTorch ",
                                                   TORCH_VERSION, " can load: ", ErrorText(e)));
  }
  v1::ModelInfo info;
  info.set_name(options.name);
  info.set_version(options.version);
  info.set_kind(v1::PRIOR_KIND_TORCHSCRIPT);
  PRL_ASSIGN_OR_RETURN(int64_t obs, IntAttribute(module, "obs_dim", source, std::nullopt));
  PRL_ASSIGN_OR_RETURN(int64_t act, IntAttribute(module, "action_dim", source, std::nullopt));
  PRL_ASSIGN_OR_RETURN(int64_t latent, IntAttribute(module, "latent_dim", source, std::nullopt));
  PRL_ASSIGN_OR_RETURN(int64_t horizon, IntAttribute(module, "horizon", source, std::nullopt));
  PRL_ASSIGN_OR_RETURN(int64_t context, IntAttribute(module, "context_dim", source, 0));
  PRL_ASSIGN_OR_RETURN(int64_t state_decoder,
                       IntAttribute(module, "state_conditioned_decoder", source, obs > 0 ? 1 : 0));
  const std::pair<const char*, int64_t> dims[] = {{"obs_dim", obs},
                                                  {"action_dim", act},
                                                  {"latent_dim", latent},
                                                  {"horizon", horizon},
                                                  {"context_dim", context}};
  for (const auto& [name, value] : dims) {
    const int64_t min =
        (std::string(name) == "action_dim" || std::string(name) == "horizon") ? 1 : 0;
    if (value < min || value > 65536) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": attribute ", name, " = ", value,
                                                     " is not allowed; it must be in ", min,
                                                     "..65536"));
    }
  }
  info.set_obs_dim(static_cast<int32_t>(obs));
  info.set_action_dim(static_cast<int32_t>(act));
  info.set_latent_dim(static_cast<int32_t>(latent));
  info.set_horizon(static_cast<int32_t>(horizon));
  info.set_context_dim(static_cast<int32_t>(context));
  info.set_state_conditioned_decoder(state_decoder != 0);
  for (PriorMethod m : kAllPriorMethods) {
    if (module.find_method(ScriptMethodName(m)).has_value()) {
      info.add_methods(std::string(PriorMethodName(m)));
    }
  }
  if (info.methods().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": the TorchScript module defines none of decode, prior, flow_forward, "
                     "flow_inverse, translate (export them with @torch.jit.export)"));
  }
  info.set_artifact_path(std::string(source));
  info.set_size_bytes(static_cast<int64_t>(bytes.size()));
  return std::make_unique<ScriptPrior>(std::move(info), std::move(module), device);
}

absl::StatusOr<std::unique_ptr<PriorInference>> LoadPrior(absl::string_view bytes,
                                                          absl::string_view source,
                                                          const PriorLoadOptions& options) {
  if (LooksLikeTorchScript(bytes)) return PriorFromTorchScript(bytes, source, options);
  PRL_ASSIGN_OR_RETURN(ModelArtifact artifact, ParseModelArtifactFile(bytes, source));
  return PriorFromArtifact(artifact, options);
}

absl::StatusOr<std::unique_ptr<PriorInference>> LoadPriorFile(const std::string& path,
                                                              const PriorLoadOptions& options) {
  PRL_ASSIGN_OR_RETURN(const std::string bytes, ReadRegularFile(path));
  return LoadPrior(bytes, path, options);
}

void SetInferenceThreads(int threads) {
  if (threads <= 0) return;
  inference_threads.store(threads, std::memory_order_relaxed);
  ApplyInferenceThreads();
}

}  // namespace prl::models
