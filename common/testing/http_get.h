// A minimal HTTP/1.0 GET over loopback, for tests that read /metrics endpoints.
#ifndef PRL_COMMON_TESTING_HTTP_GET_H_
#define PRL_COMMON_TESTING_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace prl::testing {

// GETs http://127.0.0.1:<port><path> and returns the body of a 200 response.
// Errors: UNAVAILABLE if it cannot connect, DEADLINE_EXCEEDED past `timeout`, INTERNAL for a
// non-200 status.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path,
                                    absl::Duration timeout = absl::Seconds(5));

}  // namespace prl::testing

#endif  // PRL_COMMON_TESTING_HTTP_GET_H_
