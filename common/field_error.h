// How PRL words a request or config field it refuses: the one helper behind every
// "<field>: <value> is not allowed; ..." error, so the format is written once.
//
//   FieldError("algorithm.discount", 1.5, "in (0, 1]")
//     INVALID_ARGUMENT "algorithm.discount: 1.5 is not allowed; it must be in (0, 1]"
//   FieldRangeError("algorithm.network.hidden_sizes[0]", 0, 1, 4096)
//     INVALID_ARGUMENT "algorithm.network.hidden_sizes[0]: 0 is not allowed; it must be in
//     1..4096"
//   FieldProblem("resources.num_actors", 2000, "use 1..1024, or 0 for the default 1")
//     "resources.num_actors: 2000 is not allowed; use 1..1024, or 0 for the default 1", a text
//     for callers that collect every problem before failing (learner/spec_validation.h)
//
// The replay service (and common/tensor.h) words its errors with the field quoted first,
// "field '<field>': <what>"; QuotedFieldError keeps that form for them.
//
// A value is anything absl::StrCat takes: numbers print as StrCat prints them (1.5, -1, nan,
// inf), text as given (callers quote users' strings themselves). Stateless; thread-safe.
#ifndef PRL_COMMON_FIELD_ERROR_H_
#define PRL_COMMON_FIELD_ERROR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace prl {

// "<field>: <value> is not allowed; <rule>", where `rule` says what is allowed in its own
// words ("it must be > 0", "use 1..1024", "KIND_TRAIN requires an env").
std::string FieldProblem(absl::string_view field, const absl::AlphaNum& value,
                         absl::string_view rule);

// INVALID_ARGUMENT "<field>: <value> is not allowed; it must be <allowed>".
absl::Status FieldError(absl::string_view field, const absl::AlphaNum& value,
                        absl::string_view allowed);

// INVALID_ARGUMENT "<field>: <value> is not allowed; it must be in <min>..<max>", for integers
// outside an inclusive range.
absl::Status FieldRangeError(absl::string_view field, int64_t value, int64_t min, int64_t max);

// INVALID_ARGUMENT "field '<field>': <what>", the replay service's form.
absl::Status QuotedFieldError(absl::string_view field, absl::string_view what);

// INVALID_ARGUMENT "field '<field>': <value> is not allowed; <rule>", the replay service's
// form of FieldProblem ("allowed: 1 to 4096", "must be finite and > 0").
absl::Status QuotedFieldError(absl::string_view field, const absl::AlphaNum& value,
                              absl::string_view rule);

}  // namespace prl

#endif  // PRL_COMMON_FIELD_ERROR_H_
