// Reading experiment specs written in protobuf text format (the user-facing form, see
// examples/). Parse errors name the file, line and column. Stateless; thread-safe.
#ifndef PRL_CLI_SPEC_FILE_H_
#define PRL_CLI_SPEC_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/experiment.pb.h"

namespace prl::cli {

// Parses `text` as a text-format prl.v1.ExperimentSpec; `source` names it in errors.
// Errors: INVALID_ARGUMENT "source:line:column: message" for every problem found.
absl::StatusOr<v1::ExperimentSpec> ParseSpec(absl::string_view text, absl::string_view source);

// Reads and parses a spec file. Errors: NOT_FOUND naming the file, or ParseSpec's.
absl::StatusOr<v1::ExperimentSpec> ReadSpecFile(const std::string& path);

}  // namespace prl::cli

#endif  // PRL_CLI_SPEC_FILE_H_
