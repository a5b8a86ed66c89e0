#include "common/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace prl {

namespace {

// Back from `at` to the start of a UTF-8 character.
size_t CharBoundary(absl::string_view s, size_t at) {
  while (at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return at;
}

}  // namespace

std::string BoundedStatusMessage(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  const size_t head = CharBoundary(message, kMaxStatusMessageBytes * 2 / 3);
  const size_t tail = CharBoundary(message, message.size() - kMaxStatusMessageBytes / 4);
  return absl::StrCat(message.substr(0, head), " [... ", tail - head, " bytes left out ...] ",
                      message.substr(tail));
}

// both enums use the canonical codes 0..16, so the mapping is a cast.
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      BoundedStatusMessage(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

grpc::Status UnimplementedRpc(absl::string_view binary, absl::string_view method) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      absl::StrCat(method, " is not implemented by this version of ", binary));
}

}  // namespace prl
