// SHA-256 content hashes, written "sha256:<64 lower-case hex digits>" (the form ModelInfo and
// dataset records use). OpenSSL's libcrypto does the hashing. Thread-safe.
#ifndef PRL_COMMON_SHA256_H_
#define PRL_COMMON_SHA256_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prl {

// The hash of `bytes`.
std::string Sha256(absl::string_view bytes);

// The hash of the file at `path`, read in chunks. Errors: NOT_FOUND, PERMISSION_DENIED or
// INTERNAL naming the file (common/os_error.h).
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace prl

#endif  // PRL_COMMON_SHA256_H_
