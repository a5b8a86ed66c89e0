// Inference on a frozen prior, without LibTorch in the header: the one interface through which
// the prior server's batcher, an actor's in-process prior and an actor's remote prior client
// (prior_server/prior_client.h) call a model. Inputs and outputs are float32 HostTensors in the
// row layout of proto/prior.proto, batch-first; a call's rows are independent, so calls can be
// concatenated along rows into one batch and the outputs split back (the dynamic batcher does).
//
//   method     inputs (each [B, width])                          outputs
//   Decode     z [B, latent], state [B, obs or 0]                actions [B, H', A]
//   Prior      state [B, obs]                                    mean, log_std [B, latent]
//   Forward    z [B, A], state [B, obs]                          actions [B, A], log_det [B]
//   Inverse    actions [B, A], state [B, obs]                    z [B, A], log_det [B]
//   Translate  state, source_action, source_context,             target_action [B, A]
//              target_context
//
// H' is the model's horizon for open-loop decoders and 1 for closed-loop ones (SKILL_VAE: the
// action at this state). An input the model does not take (the state of a decoder that sees
// only z, the contexts of a context-free translator) is passed as a [B, 0] tensor.
//
// Implementations: models/torch_prior_inference.h (PRL artifacts and TorchScript modules) and
// prior_server/prior_client.h (a model served by prl_prior_server). Thread-safe: Run may be
// called from several threads at once.
#ifndef PRL_MODELS_PRIOR_INFERENCE_H_
#define PRL_MODELS_PRIOR_INFERENCE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"
#include "proto/prior.pb.h"

namespace prl::models {

enum class PriorMethod { kDecode = 0, kPrior, kForward, kInverse, kTranslate };
inline constexpr int kNumPriorMethods = 5;
inline constexpr std::array<PriorMethod, kNumPriorMethods> kAllPriorMethods = {
    PriorMethod::kDecode, PriorMethod::kPrior, PriorMethod::kForward, PriorMethod::kInverse,
    PriorMethod::kTranslate};

// The PriorService method name: "Decode", "Prior", "Forward", "Inverse", "Translate".
absl::string_view PriorMethodName(PriorMethod method);
// The inverse of PriorMethodName. Errors: INVALID_ARGUMENT listing the names.
absl::StatusOr<PriorMethod> PriorMethodFromName(absl::string_view name);

// One input of a method: its proto field name and its width for a given model.
struct PriorInputSpec {
  std::string field;  // "z", "state", "actions", "source_action", ...
  int64_t width = 0;  // columns; 0 for an input the model does not take
};
// The inputs of `method` for the model `info`, in call order.
std::vector<PriorInputSpec> PriorInputSpecs(const v1::ModelInfo& info, PriorMethod method);
// The output field names of `method`, in order ("actions"; "mean", "log_std"; ...).
std::vector<std::string> PriorOutputFields(PriorMethod method);
// Rows per decoded latent that Decode returns for `info`: 1 for SKILL_VAE (closed loop), the
// horizon otherwise.
int64_t DecodeStepsPerCall(const v1::ModelInfo& info);

// True when `info` lists `method`.
bool Answers(const v1::ModelInfo& info, PriorMethod method);

// Checks a call before it runs: the model answers `method` (FAILED_PRECONDITION naming the
// model and the methods it answers); one float32 tensor per input of PriorInputSpecs, each
// [B, width] with the same B >= 1 and finite values (INVALID_ARGUMENT naming the field, the
// shape expected and the shape received). Returns B.
absl::StatusOr<int64_t> CheckPriorInputs(const v1::ModelInfo& info, PriorMethod method,
                                         const std::vector<HostTensor>& inputs);

// "name v3 (PRIOR_KIND_SKILL_VAE)", for messages.
std::string DescribeModel(const v1::ModelInfo& info);

class PriorInference {
 public:
  virtual ~PriorInference() = default;

  // The model's self-description: kind, dimensions, horizon, methods; name and version as
  // loaded.
  virtual const v1::ModelInfo& info() const = 0;

  // Runs `method` on `inputs` (checked by the caller with CheckPriorInputs, or not: an
  // implementation re-checks what it relies on). Errors: CheckPriorInputs's; INTERNAL for a
  // failure inside the model (a LibTorch error, a module returning the wrong shape) naming the
  // method; a remote client's RPC status.
  virtual absl::StatusOr<std::vector<HostTensor>> Run(
      PriorMethod method, const std::vector<HostTensor>& inputs) const = 0;
};

// Row batching helpers for float32 [B, ...] tensors (the dynamic batcher and tests).
// Concatenates tensors of equal trailing shape along rows. CHECK-fails on mismatched shapes.
HostTensor ConcatRows(const std::vector<const HostTensor*>& parts);
// Rows [begin, begin + count) of `tensor`.
HostTensor SliceRows(const HostTensor& tensor, int64_t begin, int64_t count);

}  // namespace prl::models

#endif  // PRL_MODELS_PRIOR_INFERENCE_H_
