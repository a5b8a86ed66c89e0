// The absl::Status for a failed system call on a file, from errno: NOT_FOUND, ALREADY_EXISTS,
// PERMISSION_DENIED, RESOURCE_EXHAUSTED (disk full, quota), INVALID_ARGUMENT (a name too long,
// too many symbolic links) or INTERNAL, with the message
// "<what> '<path>': <strerror>". Read errno right after the failing call.
#ifndef PRL_COMMON_OS_ERROR_H_
#define PRL_COMMON_OS_ERROR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace prl {

absl::Status OsError(absl::string_view what, const std::string& path);

}  // namespace prl

#endif  // PRL_COMMON_OS_ERROR_H_
