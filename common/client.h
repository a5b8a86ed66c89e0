// Client scaffolding shared by every PRL client (actors, learner, prlctl, tests): channel
// creation with optional TLS, a deadline and the bearer token on every call, and retries with
// jittered exponential backoff for UNAVAILABLE. Stateless functions; thread-safe.
#ifndef PRL_COMMON_CLIENT_H_
#define PRL_COMMON_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace prl {

struct ChannelOptions {
  // "host:port".
  std::string address;
  // PEM root certificates to verify the server with; empty means plaintext.
  std::string tls_ca_file;
  // Overrides the name checked against the server certificate (tests, IP addresses).
  std::string tls_server_name;
  // Largest message sent or received.
  int max_message_bytes = 64 << 20;
};

// Creates a channel (connection is lazy). Errors: INVALID_ARGUMENT for an empty address,
// NOT_FOUND for an unreadable CA file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(const ChannelOptions& options);

struct CallOptions {
  // Deadline of each attempt, from its start.
  absl::Duration timeout = absl::Seconds(10);
  // Bearer token sent as "authorization: Bearer <token>"; empty sends none.
  std::string auth_token;
};

// Sets the deadline and the token on a fresh context.
void PrepareContext(const CallOptions& options, grpc::ClientContext* context);

// Lets another thread end the calls of CallWithRetry that use it: the attempt in flight is
// cancelled (grpc::ClientContext::TryCancel), a backoff sleep ends, and no attempt starts
// after Cancel, so a shutdown need not wait out a retry schedule of minutes. Thread-safe.
class CallCanceller {
 public:
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  bool cancelled() const ABSL_LOCKS_EXCLUDED(mu_);

  // For CallWithRetry: registers an attempt's context until End (false, and nothing
  // registered, once cancelled); sleeps `d` or until Cancel (false when cancelled).
  bool Begin(grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(mu_);
  void End() ABSL_LOCKS_EXCLUDED(mu_);
  bool SleepFor(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
};

struct RetryOptions {
  // Attempts in all, including the first.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  double multiplier = 2.0;
  // No attempt starts after this much time has passed since the first.
  absl::Duration total_timeout = absl::Seconds(30);
  // Not owned; when set, Cancel ends the call (CANCELLED) wherever it is.
  CallCanceller* canceller = nullptr;
};

// Runs `call` with a fresh prepared context until it returns something other than
// UNAVAILABLE, attempts run out or the total timeout passes; sleeps a jittered exponential
// backoff between attempts. Returns the last status, converted to absl::Status.
absl::Status CallWithRetry(const CallOptions& call_options, const RetryOptions& retry,
                           const std::function<grpc::Status(grpc::ClientContext*)>& call);

// Asks the standard health service of the server behind `channel`; OK iff it answers
// SERVING for `service` ("" = the whole server). Errors: the RPC's status, or UNAVAILABLE
// "not serving" with the status it reported.
absl::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const CallOptions& options,
                         const std::string& service = "");

}  // namespace prl

#endif  // PRL_COMMON_CLIENT_H_
