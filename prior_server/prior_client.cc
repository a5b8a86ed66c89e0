#include "prior_server/prior_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "models/model_directory.h"

namespace prl::prior_server {
namespace {

using models::PriorMethod;

void Put(const HostTensor& t, v1::Tensor* proto) { TensorToProto(t.view(), proto); }

// Takes an output tensor of the reply, checking it is float32 with `rows` rows.
absl::Status Take(v1::Tensor* proto, const char* field, int64_t rows,
                  std::vector<HostTensor>* out) {
  PRL_ASSIGN_OR_RETURN(HostTensor t, TensorFromProto(std::move(*proto), field));
  if (t.dtype() != DType::kFloat32 || t.shape().empty() || t.shape()[0] != rows) {
    return absl::InternalError(absl::StrCat("the prior server answered ", field, " of shape ",
                                            ShapeString(t.shape()), " for ", rows, " rows"));
  }
  out->push_back(std::move(t));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemotePrior>> RemotePrior::Connect(
    std::shared_ptr<grpc::Channel> channel, const v1::PriorRef& ref,
    const RemotePriorOptions& options) {
  PRL_RETURN_IF_ERROR(models::ValidateModelName(ref.name(), "prior.name"));
  if (ref.version() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior.version: ", ref.version(), " is not allowed; it must be >= 0"));
  }
  auto stub = v1::PriorService::NewStub(channel);
  v1::ListModelsRequest request;
  request.set_name(ref.name());
  request.set_include_unloaded(true);
  v1::ListModelsResponse response;
  PRL_RETURN_IF_ERROR(CallWithRetry(options.call, options.retry, [&](grpc::ClientContext* context) {
    response.Clear();
    return stub->ListModels(context, request, &response);
  }));
  const v1::ModelInfo* chosen = nullptr;
  std::vector<std::string> versions;
  for (const v1::ModelInfo& m : response.models()) {
    versions.push_back(absl::StrCat("v", m.version()));
    if (ref.version() == 0 ? (chosen == nullptr || m.version() > chosen->version())
                           : m.version() == ref.version()) {
      chosen = &m;
    }
  }
  if (chosen == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("the prior server has no model '", ref.name(), "'",
                     ref.version() == 0 ? "" : absl::StrCat(" v", ref.version()), " (it has ",
                     versions.empty() ? "no versions of it" : absl::StrJoin(versions, ", "), ")"));
  }
  v1::ModelInfo info = *chosen;
  info.clear_loaded();
  return std::unique_ptr<RemotePrior>(new RemotePrior(std::move(stub), std::move(info), options));
}

absl::StatusOr<std::vector<HostTensor>> RemotePrior::Run(
    PriorMethod method, const std::vector<HostTensor>& inputs) const {
  PRL_ASSIGN_OR_RETURN(const int64_t rows, models::CheckPriorInputs(info_, method, inputs));
  v1::PriorRef ref;
  ref.set_name(info_.name());
  ref.set_version(info_.version());
  std::vector<HostTensor> out;
  switch (method) {
    case PriorMethod::kDecode: {
      v1::DecodeRequest request;
      *request.mutable_model() = ref;
      Put(inputs[0], request.mutable_z());
      if (inputs[1].shape()[1] > 0) Put(inputs[1], request.mutable_state());
      v1::DecodeResponse response;
      PRL_RETURN_IF_ERROR(CallWithRetry(options_.call, options_.retry, [&](auto* context) {
        return stub_->Decode(context, request, &response);
      }));
      PRL_RETURN_IF_ERROR(Take(response.mutable_actions(), "actions", rows, &out));
      break;
    }
    case PriorMethod::kPrior: {
      v1::PriorRequest request;
      *request.mutable_model() = ref;
      Put(inputs[0], request.mutable_state());
      v1::PriorResponse response;
      PRL_RETURN_IF_ERROR(CallWithRetry(options_.call, options_.retry, [&](auto* context) {
        return stub_->Prior(context, request, &response);
      }));
      PRL_RETURN_IF_ERROR(Take(response.mutable_mean(), "mean", rows, &out));
      PRL_RETURN_IF_ERROR(Take(response.mutable_log_std(), "log_std", rows, &out));
      break;
    }
    case PriorMethod::kForward: {
      v1::ForwardRequest request;
      *request.mutable_model() = ref;
      Put(inputs[0], request.mutable_z());
      Put(inputs[1], request.mutable_state());
      v1::ForwardResponse response;
      PRL_RETURN_IF_ERROR(CallWithRetry(options_.call, options_.retry, [&](auto* context) {
        return stub_->Forward(context, request, &response);
      }));
      PRL_RETURN_IF_ERROR(Take(response.mutable_actions(), "actions", rows, &out));
      PRL_RETURN_IF_ERROR(Take(response.mutable_log_det(), "log_det", rows, &out));
      break;
    }
    case PriorMethod::kInverse: {
      v1::InverseRequest request;
      *request.mutable_model() = ref;
      Put(inputs[0], request.mutable_actions());
      Put(inputs[1], request.mutable_state());
      v1::InverseResponse response;
      PRL_RETURN_IF_ERROR(CallWithRetry(options_.call, options_.retry, [&](auto* context) {
        return stub_->Inverse(context, request, &response);
      }));
      PRL_RETURN_IF_ERROR(Take(response.mutable_z(), "z", rows, &out));
      PRL_RETURN_IF_ERROR(Take(response.mutable_log_det(), "log_det", rows, &out));
      break;
    }
    case PriorMethod::kTranslate: {
      v1::TranslateRequest request;
      *request.mutable_model() = ref;
      Put(inputs[0], request.mutable_state());
      Put(inputs[1], request.mutable_source_action());
      if (inputs[2].shape()[1] > 0) Put(inputs[2], request.mutable_source_context());
      if (inputs[3].shape()[1] > 0) Put(inputs[3], request.mutable_target_context());
      v1::TranslateResponse response;
      PRL_RETURN_IF_ERROR(CallWithRetry(options_.call, options_.retry, [&](auto* context) {
        return stub_->Translate(context, request, &response);
      }));
      PRL_RETURN_IF_ERROR(Take(response.mutable_target_action(), "target_action", rows, &out));
      break;
    }
  }
  return out;
}

absl::StatusOr<v1::ModelInfo> PushModel(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& name, int64_t version,
                                        const std::string& file_bytes,
                                        const RemotePriorOptions& options) {
  auto stub = v1::PriorService::NewStub(channel);
  v1::LoadModelRequest request;
  request.set_name(name);
  request.set_version(version);
  request.set_artifact(file_bytes);
  v1::LoadModelResponse response;
  PRL_RETURN_IF_ERROR(CallWithRetry(options.call, options.retry, [&](grpc::ClientContext* c) {
    return stub->LoadModel(c, request, &response);
  }));
  return response.model();
}

}  // namespace prl::prior_server
