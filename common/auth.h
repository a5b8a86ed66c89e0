// Bearer-token check for mutating RPCs. Clients send "authorization: Bearer <token>" metadata
// (common/client.h does it); handlers of mutating RPCs call Check() first. With no token
// configured every call passes. Immutable after construction, so thread-safe.
#ifndef PRL_COMMON_AUTH_H_
#define PRL_COMMON_AUTH_H_

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace prl {

// The metadata key carrying the token (gRPC metadata keys are lower case).
inline constexpr char kAuthMetadataKey[] = "authorization";

class TokenAuthenticator {
 public:
  // An empty token disables the check.
  explicit TokenAuthenticator(std::string token) : token_(std::move(token)) {}

  bool enabled() const { return !token_.empty(); }

  // OK if auth is disabled or the call carries the token; UNAUTHENTICATED otherwise, with a
  // message saying what was missing or wrong (never the expected token).
  grpc::Status Check(const grpc::ServerContext& context) const;

 private:
  const std::string token_;
};

// Reads a token file: its contents with surrounding whitespace removed.
// Errors: NOT_FOUND / PERMISSION_DENIED naming the file; INVALID_ARGUMENT if it is empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace prl

#endif  // PRL_COMMON_AUTH_H_
