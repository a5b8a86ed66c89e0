#include "common/field_error.h"

namespace prl {

std::string FieldProblem(absl::string_view field, const absl::AlphaNum& value,
                         absl::string_view rule) {
  return absl::StrCat(field, ": ", value, " is not allowed; ", rule);
}

absl::Status FieldError(absl::string_view field, const absl::AlphaNum& value,
                        absl::string_view allowed) {
  return absl::InvalidArgumentError(
      FieldProblem(field, value, absl::StrCat("it must be ", allowed)));
}

absl::Status FieldRangeError(absl::string_view field, int64_t value, int64_t min, int64_t max) {
  return FieldError(field, value, absl::StrCat("in ", min, "..", max));
}

absl::Status QuotedFieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", what));
}

absl::Status QuotedFieldError(absl::string_view field, const absl::AlphaNum& value,
                              absl::string_view rule) {
  return QuotedFieldError(field, absl::StrCat(value, " is not allowed; ", rule));
}

}  // namespace prl
