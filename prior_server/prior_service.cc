#include "prior_server/prior_service.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "models/model_directory.h"

namespace prl::prior_server {
namespace {

using models::PriorMethod;

absl::Time DeadlineOf(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline >=
      std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365 * 100)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

}  // namespace

PriorServiceImpl::PriorServiceImpl(const PriorServiceOptions& options, ModelRegistry* registry,
                                   PriorMetrics* metrics)
    : auth_(options.auth_token), options_(options), registry_(registry), metrics_(metrics) {}

grpc::Status PriorServiceImpl::ListModels(grpc::ServerContext*,
                                          const v1::ListModelsRequest* request,
                                          v1::ListModelsResponse* response) {
  if (!request->name().empty()) {
    absl::Status s = models::ValidateModelName(request->name(), "name");
    if (!s.ok()) return ToGrpcStatus(s);
  }
  for (v1::ModelInfo& info : registry_->List(request->name(), request->include_unloaded())) {
    *response->add_models() = std::move(info);
  }
  return grpc::Status::OK;
}

grpc::Status PriorServiceImpl::LoadModel(grpc::ServerContext* context,
                                         const v1::LoadModelRequest* request,
                                         v1::LoadModelResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  absl::StatusOr<v1::ModelInfo> info = registry_->Load(*request);
  if (!info.ok()) return ToGrpcStatus(info.status());
  *response->mutable_model() = *std::move(info);
  return grpc::Status::OK;
}

grpc::Status PriorServiceImpl::UnloadModel(grpc::ServerContext* context,
                                           const v1::UnloadModelRequest* request,
                                           v1::UnloadModelResponse* response) {
  if (grpc::Status s = auth_.Check(*context); !s.ok()) return s;
  absl::StatusOr<std::vector<v1::PriorRef>> unloaded =
      registry_->Unload(request->name(), request->version());
  if (!unloaded.ok()) return ToGrpcStatus(unloaded.status());
  for (v1::PriorRef& ref : *unloaded) *response->add_unloaded() = std::move(ref);
  return grpc::Status::OK;
}

grpc::Status PriorServiceImpl::Infer(grpc::ServerContext* context, PriorMethod method,
                                     const v1::PriorRef& ref,
                                     const std::vector<const v1::Tensor*>& fields,
                                     std::vector<HostTensor>* outputs, v1::PriorRef* resolved) {
  const std::string method_name(models::PriorMethodName(method));
  std::string model_label = "(unknown)";  // bad names must not become label values
  auto finish = [&](const absl::Status& status) {
    if (metrics_ != nullptr) metrics_->CountRequest(model_label, method_name, status.code());
    return ToGrpcStatus(status);
  };

  absl::StatusOr<std::shared_ptr<const LoadedModel>> model =
      registry_->Get(ref.name(), ref.version(), "model.");
  if (!model.ok()) return finish(model.status());
  const v1::ModelInfo& info = (*model)->info();
  model_label = info.name();
  if (!models::Answers(info, method)) {
    return finish(absl::FailedPreconditionError(
        absl::StrCat("model ", models::DescribeModel(info), " does not answer ", method_name,
                     "; it answers: ", absl::StrJoin(info.methods(), ", "))));
  }

  // Inputs: every tensor the model takes, as [B, width] float32 with finite values; inputs it
  // does not take are ignored (a decoder's state) or must be absent (a translator's contexts).
  const std::vector<models::PriorInputSpec> specs = models::PriorInputSpecs(info, method);
  std::vector<HostTensor> inputs(specs.size());
  int64_t rows = -1;
  std::string rows_field;
  std::vector<size_t> unused;
  for (size_t i = 0; i < specs.size(); ++i) {
    const v1::Tensor* proto = fields[i];
    const bool present = proto != nullptr && !proto->shape().empty();
    if (specs[i].width == 0) {
      if (present && method == PriorMethod::kTranslate) {
        return finish(absl::InvalidArgumentError(
            absl::StrCat(specs[i].field, ": must be absent; model ", models::DescribeModel(info),
                         " takes no task contexts (context_dim 0)")));
      }
      unused.push_back(i);
      continue;
    }
    if (!present) {
      return finish(absl::InvalidArgumentError(
          absl::StrCat(specs[i].field, ": required by model ", models::DescribeModel(info),
                       "; send float32 [B, ", specs[i].width, "]")));
    }
    TensorSpec spec;
    spec.name = specs[i].field;
    spec.dtype = DType::kFloat32;
    spec.shape = std::vector<int64_t>{-1, specs[i].width};
    spec.require_finite = true;
    absl::StatusOr<TensorView> view = ViewAndCheckTensorProto(*proto, spec);
    if (!view.ok()) return finish(view.status());
    const int64_t b = view->shape[0];
    if (b < 1) {
      return finish(absl::InvalidArgumentError(
          absl::StrCat(specs[i].field, ": 0 rows; a call needs at least one row")));
    }
    if (rows < 0) {
      rows = b;
      rows_field = specs[i].field;
      if (rows > options_.max_request_rows) {
        return finish(absl::InvalidArgumentError(
            absl::StrCat(specs[i].field, ": ", rows, " rows; a call may carry at most ",
                         options_.max_request_rows, " (--max_request_rows); split it")));
      }
    } else if (b != rows) {
      return finish(absl::InvalidArgumentError(
          absl::StrCat(specs[i].field, ": ", b, " rows, but ", rows_field, " has ", rows,
                       "; every input must have the same rows")));
    }
    inputs[i] = HostTensor::Copy(*view);
  }
  for (size_t i : unused) inputs[i] = HostTensor::Zeros(DType::kFloat32, {rows, 0}).value();

  const absl::Time deadline = DeadlineOf(*context);
  absl::StatusOr<std::vector<HostTensor>> out = (*model)->Call(
      method, std::move(inputs), rows, deadline, [context] { return context->IsCancelled(); });
  if (!out.ok()) return finish(out.status());
  *outputs = *std::move(out);
  resolved->set_name(info.name());
  resolved->set_version(info.version());
  return finish(absl::OkStatus());
}

grpc::Status PriorServiceImpl::Decode(grpc::ServerContext* context,
                                      const v1::DecodeRequest* request,
                                      v1::DecodeResponse* response) {
  std::vector<HostTensor> out;
  grpc::Status s = Infer(context, PriorMethod::kDecode, request->model(),
                         {request->has_z() ? &request->z() : nullptr,
                          request->has_state() ? &request->state() : nullptr},
                         &out, response->mutable_model());
  if (!s.ok()) return s;
  TensorToProto(std::move(out[0]), response->mutable_actions());
  return s;
}

grpc::Status PriorServiceImpl::Prior(grpc::ServerContext* context, const v1::PriorRequest* request,
                                     v1::PriorResponse* response) {
  std::vector<HostTensor> out;
  grpc::Status s =
      Infer(context, PriorMethod::kPrior, request->model(),
            {request->has_state() ? &request->state() : nullptr}, &out, response->mutable_model());
  if (!s.ok()) return s;
  TensorToProto(std::move(out[0]), response->mutable_mean());
  TensorToProto(std::move(out[1]), response->mutable_log_std());
  return s;
}

grpc::Status PriorServiceImpl::Forward(grpc::ServerContext* context,
                                       const v1::ForwardRequest* request,
                                       v1::ForwardResponse* response) {
  std::vector<HostTensor> out;
  grpc::Status s = Infer(context, PriorMethod::kForward, request->model(),
                         {request->has_z() ? &request->z() : nullptr,
                          request->has_state() ? &request->state() : nullptr},
                         &out, response->mutable_model());
  if (!s.ok()) return s;
  TensorToProto(std::move(out[0]), response->mutable_actions());
  TensorToProto(std::move(out[1]), response->mutable_log_det());
  return s;
}

grpc::Status PriorServiceImpl::Inverse(grpc::ServerContext* context,
                                       const v1::InverseRequest* request,
                                       v1::InverseResponse* response) {
  std::vector<HostTensor> out;
  grpc::Status s = Infer(context, PriorMethod::kInverse, request->model(),
                         {request->has_actions() ? &request->actions() : nullptr,
                          request->has_state() ? &request->state() : nullptr},
                         &out, response->mutable_model());
  if (!s.ok()) return s;
  TensorToProto(std::move(out[0]), response->mutable_z());
  TensorToProto(std::move(out[1]), response->mutable_log_det());
  return s;
}

grpc::Status PriorServiceImpl::Translate(grpc::ServerContext* context,
                                         const v1::TranslateRequest* request,
                                         v1::TranslateResponse* response) {
  std::vector<HostTensor> out;
  grpc::Status s = Infer(context, PriorMethod::kTranslate, request->model(),
                         {request->has_state() ? &request->state() : nullptr,
                          request->has_source_action() ? &request->source_action() : nullptr,
                          request->has_source_context() ? &request->source_context() : nullptr,
                          request->has_target_context() ? &request->target_context() : nullptr},
                         &out, response->mutable_model());
  if (!s.ok()) return s;
  TensorToProto(std::move(out[0]), response->mutable_target_action());
  return s;
}

}  // namespace prl::prior_server
