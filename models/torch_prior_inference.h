// In-process inference on a frozen prior with LibTorch: PRL prior artifacts (SKILL_VAE through
// models/skill_model.h, REAL_NVP_FLOW through models/real_nvp.h) and TorchScript modules
// exported from PyTorch (the contract of proto/prior.proto's LoadModelRequest). What the prior
// server loads into each model slot and what an actor uses for an in-process prior. The header
// carries no LibTorch: devices are named by strings.
//
// Every call runs without autograd (c10::InferenceMode for PRL models, NoGradGuard for
// TorchScript). Thread-safe: Run may be called from several threads at once.
#ifndef PRL_MODELS_TORCH_PRIOR_INFERENCE_H_
#define PRL_MODELS_TORCH_PRIOR_INFERENCE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/artifact.h"
#include "models/prior_inference.h"

namespace prl::models {

struct PriorLoadOptions {
  // "cpu", "cuda", "cuda:N", or "auto" (the first CUDA device when this process has one).
  std::string device = "cpu";
  // Name and version to serve the model under. Empty / 0: the artifact's own (a PRL artifact
  // stores them; a TorchScript module does not, so it needs both).
  std::string name;
  int64_t version = 0;
};

// A PRL artifact as a PriorInference. Errors: UNIMPLEMENTED for a kind this build cannot serve
// yet (naming it); the model class's FromArtifact errors (INVALID_ARGUMENT naming the field);
// FAILED_PRECONDITION for a device this process does not have.
absl::StatusOr<std::unique_ptr<PriorInference>> PriorFromArtifact(const ModelArtifact& artifact,
                                                                  const PriorLoadOptions& options);

// True when `bytes` start like a TorchScript archive (a zip file) rather than a PRL file.
bool LooksLikeTorchScript(absl::string_view bytes);

// A TorchScript module (the bytes of a .pt file). Its int attributes obs_dim, action_dim,
// latent_dim and horizon (and the optional context_dim and bool state_conditioned_decoder,
// default obs_dim > 0) give the ModelInfo; the methods it defines (decode, prior, flow_forward,
// flow_inverse, translate) give ModelInfo.methods. Outputs are checked against the contract on
// every call (INTERNAL naming the method and the shape). Errors: INVALID_ARGUMENT naming
// `source` for a module that does not load, lacks an attribute or defines none of the methods.
absl::StatusOr<std::unique_ptr<PriorInference>> PriorFromTorchScript(
    absl::string_view bytes, absl::string_view source, const PriorLoadOptions& options);

// Either kind of file, told apart by its first bytes; `source` names it in errors (and becomes
// ModelInfo.artifact_path). Errors: those of ParseModelArtifact, PriorFromArtifact and
// PriorFromTorchScript.
absl::StatusOr<std::unique_ptr<PriorInference>> LoadPrior(absl::string_view bytes,
                                                          absl::string_view source,
                                                          const PriorLoadOptions& options);

// Reads `path` and calls LoadPrior. Errors: NOT_FOUND for a missing file; LoadPrior's.
absl::StatusOr<std::unique_ptr<PriorInference>> LoadPriorFile(const std::string& path,
                                                              const PriorLoadOptions& options);

// Sets LibTorch's intra-op threads for every later inference call, on whichever thread it runs
// (with OpenMP the setting is per thread; each thread applies it before its first call). 0 keeps
// LibTorch's default.
void SetInferenceThreads(int threads);

}  // namespace prl::models

#endif  // PRL_MODELS_TORCH_PRIOR_INFERENCE_H_
