// The one conversion between absl::Status (used inside PRL) and grpc::Status (used at the
// service edge). Codes map one to one; messages are kept.
#ifndef PRL_COMMON_GRPC_STATUS_H_
#define PRL_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace prl {

// Converts an absl::Status to the grpc::Status a handler returns.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a grpc::Status received by a client to an absl::Status.
absl::Status FromGrpcStatus(const grpc::Status& status);

// UNIMPLEMENTED for an RPC this build does not serve yet, naming it and the binary.
grpc::Status UnimplementedRpc(absl::string_view binary, absl::string_view method);

}  // namespace prl

#endif  // PRL_COMMON_GRPC_STATUS_H_
