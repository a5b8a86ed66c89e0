#include "replay/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace prl::replay {
namespace {
constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max() / 4;
}  // namespace

RateLimiter::RateLimiter(const v1::RateLimiterConfig& config)
    : min_size_(config.min_size_to_sample()),
      samples_per_insert_(config.samples_per_insert()),
      min_diff_(config.samples_per_insert() * config.min_size_to_sample() - config.error_buffer()),
      max_diff_(config.samples_per_insert() * config.min_size_to_sample() + config.error_buffer()) {
}

int64_t RateLimiter::InsertPermits(int64_t size) const {
  if (samples_per_insert_ <= 0) return kUnlimited;
  const double diff = samples_per_insert_ * inserted_ - sampled_;
  // each inserted item adds samples_per_insert to diff, which must stay <= max_diff.
  const double room = (max_diff_ - diff) / samples_per_insert_;
  const int64_t by_ratio =
      room < 1 ? 0 : static_cast<int64_t>(std::min<double>(std::floor(room), kUnlimited));
  return std::max(by_ratio, min_size_ - size);
}

int64_t RateLimiter::SamplePermits(int64_t size) const {
  if (size < min_size_) return 0;
  if (samples_per_insert_ <= 0) return kUnlimited;
  const double diff = samples_per_insert_ * inserted_ - sampled_;
  // each sampled item subtracts 1 from diff, which must stay >= min_diff.
  const double room = diff - min_diff_;
  return room < 1 ? 0 : static_cast<int64_t>(std::min<double>(std::floor(room), kUnlimited));
}

absl::Status ValidateRateLimiterConfig(const std::string& field_prefix,
                                       v1::RateLimiterConfig* config) {
  if (config->min_size_to_sample() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "field '", field_prefix, ".min_size_to_sample': ", config->min_size_to_sample(),
        " is negative; allowed: >= 0 (0 means 1)"));
  }
  if (config->min_size_to_sample() == 0) config->set_min_size_to_sample(1);
  const double spi = config->samples_per_insert();
  if (!std::isfinite(spi) || spi < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", field_prefix, ".samples_per_insert': ", spi,
                     " is not allowed; allowed: finite and >= 0 (0 means no ratio limit)"));
  }
  const double eb = config->error_buffer();
  if (!std::isfinite(eb) || eb < 0) {
    return absl::InvalidArgumentError(absl::StrCat("field '", field_prefix, ".error_buffer': ", eb,
                                                   " is not allowed; allowed: finite, >= 0"));
  }
  if (spi > 0) {
    const double min_buffer = std::max(1.0, spi);
    if (eb == 0) config->set_error_buffer(100 * min_buffer);
    if (config->error_buffer() < min_buffer) {
      return absl::InvalidArgumentError(absl::StrCat(
          "field '", field_prefix, ".error_buffer': ", eb, " is too small for samples_per_insert ",
          spi, "; allowed: >= max(1, samples_per_insert) = ", min_buffer));
    }
  }
  return absl::OkStatus();
}

}  // namespace prl::replay
