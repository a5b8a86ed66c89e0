// The one conversion between absl::Status (used inside PRL) and grpc::Status (used at the
// service edge). Codes map one to one; messages are kept.
#ifndef PRL_COMMON_GRPC_STATUS_H_
#define PRL_COMMON_GRPC_STATUS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace prl {

// Converts an absl::Status to the grpc::Status a handler returns; a message longer than
// kMaxStatusMessageBytes is shortened (BoundedStatusMessage).
grpc::Status ToGrpcStatus(const absl::Status& status);

// Messages travel in a trailer, and gRPC drops a call whose metadata passes 16 KiB: a message
// quoting a long user string back (a 20,000-byte table name) would turn a clear error into
// RESOURCE_EXHAUSTED "Stream removed". Longer messages keep their start (the field and what
// was wrong) and end (what is allowed), at UTF-8 character boundaries.
inline constexpr size_t kMaxStatusMessageBytes = 4096;
std::string BoundedStatusMessage(absl::string_view message);

// Converts a grpc::Status received by a client to an absl::Status.
absl::Status FromGrpcStatus(const grpc::Status& status);

// UNIMPLEMENTED for an RPC this build does not serve yet, naming it and the binary.
grpc::Status UnimplementedRpc(absl::string_view binary, absl::string_view method);

}  // namespace prl

#endif  // PRL_COMMON_GRPC_STATUS_H_
