#include "replay/table_config.h"

#include <cmath>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/field_error.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "replay/rate_limiter.h"

namespace prl::replay {
namespace {

constexpr int64_t kDefaultCapacity = 1'000'000;
constexpr double kDefaultPriorityExponent = 0.6;
constexpr int kMaxRank = 8;
constexpr int32_t kMaxSequenceLength = 10'000;

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status ValidateSignature(v1::TableConfig* config) {
  if (config->signature().empty()) {
    return QuotedFieldError("config.signature", "is empty; a table needs at least one column");
  }
  absl::flat_hash_set<std::string> names;
  for (int i = 0; i < config->signature_size(); ++i) {
    const v1::ColumnSpec& column = config->signature(i);
    const std::string field = absl::StrCat("config.signature[", i, "]");
    const std::string& name = column.name();
    if (!ValidName(name) || name.find_first_of(".-") != std::string::npos) {
      return QuotedFieldError(field + ".name",
                              absl::StrCat("'", name,
                                           "' is not a valid column name; allowed: 1-63 "
                                           "of [a-z0-9_] starting with a letter"));
    }
    if (!names.insert(column.name()).second) {
      return QuotedFieldError(field + ".name", absl::StrCat("'", column.name(), "' is used twice"));
    }
    PRL_RETURN_IF_ERROR(DTypeFromProto(column.dtype(), field + ".dtype").status());
    if (column.shape_size() > kMaxRank) {
      return QuotedFieldError(field + ".shape", absl::StrCat("has rank ", column.shape_size(),
                                                             "; allowed: at most ", kMaxRank));
    }
    for (int d = 0; d < column.shape_size(); ++d) {
      if (column.shape(d) < 1) {
        return QuotedFieldError(absl::StrCat(field, ".shape[", d, "]"), column.shape(d),
                                "dimensions must be >= 1");
      }
    }
  }
  return absl::OkStatus();
}

// An item of a validated signature must fit in one message; multiplies with overflow checks.
absl::Status CheckItemFitsInMessage(const TableLimits& limits, const v1::TableConfig& config) {
  int64_t item_bytes = 0;
  for (int i = 0; i < config.signature_size(); ++i) {
    const v1::ColumnSpec& column = config.signature(i);
    int64_t bytes = static_cast<int64_t>(DTypeSize(*DTypeFromProto(column.dtype(), "")));
    bytes *= config.sequence_length();
    for (int64_t d : column.shape()) {
      if (bytes > limits.max_message_bytes / d) {
        bytes = limits.max_message_bytes + 1;
        break;
      }
      bytes *= d;
    }
    item_bytes += bytes;
    if (item_bytes > limits.max_message_bytes) {
      return QuotedFieldError(
          absl::StrCat("config.signature[", i, "].shape"),
          absl::StrCat("makes an item larger than the ", limits.max_message_bytes,
                       "-byte message limit (--max_message_bytes)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTableConfig(const TableLimits& limits, v1::TableConfig* config) {
  if (!ValidName(config->name())) {
    return QuotedFieldError("config.name",
                            absl::StrCat("'", config->name(),
                                         "' is not a valid table name; allowed: 1-63 of "
                                         "[a-z0-9_.-] starting with a lower-case letter"));
  }
  PRL_RETURN_IF_ERROR(ValidateSignature(config));
  if (config->capacity() == 0) config->set_capacity(kDefaultCapacity);
  if (config->capacity() < 0 || config->capacity() > limits.max_capacity) {
    return QuotedFieldError(
        "config.capacity", config->capacity(),
        absl::StrCat("allowed: 1 to ", limits.max_capacity, " (0 means ", kDefaultCapacity, ")"));
  }
  if (!v1::Sampler_IsValid(config->sampler())) {
    return QuotedFieldError("config.sampler",
                            absl::StrCat(config->sampler(), " is not a known sampler"));
  }
  if (config->sampler() == v1::SAMPLER_UNSPECIFIED) config->set_sampler(v1::SAMPLER_UNIFORM);
  if (!v1::Remover_IsValid(config->remover())) {
    return QuotedFieldError("config.remover",
                            absl::StrCat(config->remover(), " is not a known remover"));
  }
  if (config->remover() == v1::REMOVER_UNSPECIFIED) config->set_remover(v1::REMOVER_FIFO);
  if (config->priority_exponent() == 0) config->set_priority_exponent(kDefaultPriorityExponent);
  if (!std::isfinite(config->priority_exponent()) || config->priority_exponent() < 0) {
    return QuotedFieldError("config.priority_exponent", config->priority_exponent(),
                            "must be finite and > 0");
  }
  if (config->max_times_sampled() < 0) {
    return QuotedFieldError(
        "config.max_times_sampled",
        absl::StrCat(config->max_times_sampled(), " is negative; 0 means unlimited"));
  }
  if (config->sequence_length() == 0) config->set_sequence_length(1);
  if (config->sequence_length() < 1 || config->sequence_length() > kMaxSequenceLength) {
    return QuotedFieldError("config.sequence_length", config->sequence_length(),
                            absl::StrCat("allowed: 1 to ", kMaxSequenceLength));
  }
  PRL_RETURN_IF_ERROR(CheckItemFitsInMessage(limits, *config));
  PRL_RETURN_IF_ERROR(
      ValidateRateLimiterConfig("config.rate_limiter", config->mutable_rate_limiter()));
  if (config->rate_limiter().min_size_to_sample() > config->capacity()) {
    return QuotedFieldError(
        "config.rate_limiter.min_size_to_sample",
        absl::StrCat(config->rate_limiter().min_size_to_sample(), " exceeds the capacity ",
                     config->capacity(), ", so sampling could never start"));
  }
  return absl::OkStatus();
}

}  // namespace prl::replay
