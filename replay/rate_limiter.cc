#include "replay/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

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

v1::RateLimiterState RateLimiterStateOf(const v1::TableInfo& info) {
  RateLimiter limiter(info.config().rate_limiter());
  limiter.SetCounts(info.inserted_total(), info.sampled_total());
  v1::RateLimiterState state;
  state.set_size(info.size());
  state.set_inserted(info.inserted_total());
  state.set_sampled(info.sampled_total());
  // the table's own answer wins: it also counts samples in flight and items they will remove.
  state.set_insert_permits(
      info.can_insert() ? std::max<int64_t>(1, limiter.InsertPermits(info.size())) : 0);
  state.set_sample_permits(
      info.can_sample() ? std::max<int64_t>(1, limiter.SamplePermits(info.size())) : 0);
  return state;
}

std::vector<int> Apportion(int total, const std::vector<double>& weights, absl::BitGen* rng) {
  std::vector<int> out(weights.size(), 0);
  if (weights.empty()) return out;
  double sum = 0;
  for (double w : weights) sum += std::max(0.0, w);
  if (!(sum > 0)) {
    for (int i = 0; i < total; ++i) ++out[i % out.size()];
    return out;
  }
  std::vector<std::pair<double, size_t>> remainders;
  int given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double exact = total * std::max(0.0, weights[i]) / sum;
    out[i] = std::min(total - given, static_cast<int>(std::floor(exact)));
    given += out[i];
    remainders.push_back({exact - out[i], i});
  }
  if (rng != nullptr && given < total) {
    // one point every 1.0 along the fractions laid end to end, from a random start: fraction f
    // holds a point with probability f, and (they add up to total - given) no point is missed.
    double point = absl::Uniform(*rng, 0.0, 1.0);
    double end = 0;
    for (const auto& [fraction, i] : remainders) {
      end += fraction;
      while (point < end && given < total) {
        ++out[i];
        ++given;
        point += 1.0;
      }
    }
  }
  // the largest remainders first; among equal ones, the lower index.
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; given < total; ++k, ++given) ++out[remainders[k % remainders.size()].second];
  return out;
}

std::vector<int> SplitSampleBatch(int batch, const std::vector<ShardSampleState>& shards,
                                  absl::BitGen* rng) {
  const size_t n = shards.size();
  std::vector<int> counts(n, 0);
  if (n == 0 || batch <= 0) return counts;
  std::vector<int> caps(n);
  int64_t can_give = 0;
  for (size_t s = 0; s < n; ++s) {
    caps[s] = static_cast<int>(std::clamp<int64_t>(shards[s].sample_permits, 0, batch));
    can_give += caps[s];
  }
  if (can_give >= batch) {
    // by size, capped by permits: each pass fills the batch or closes a shard at its cap.
    int left = batch;
    while (left > 0) {
      std::vector<double> weights(n, 0.0);
      bool open = false;
      for (size_t s = 0; s < n; ++s) {
        if (counts[s] < caps[s]) weights[s] = std::max<double>(1.0, shards[s].size);
        open = open || counts[s] < caps[s];
      }
      if (!open) break;  // cannot happen: the caps add up to the batch
      const std::vector<int> share = Apportion(left, weights, rng);
      for (size_t s = 0; s < n; ++s) {
        const int give = std::min(share[s], caps[s] - counts[s]);
        counts[s] += give;
        left -= give;
      }
    }
    return counts;
  }
  counts = caps;
  // the rest where inserts will make permits: ready shards that take inserts, else ready
  // shards, else all.
  std::vector<double> weights(n, 0.0);
  for (const bool need_inserts : {true, false}) {
    for (size_t s = 0; s < n; ++s) {
      if (shards[s].ready && (shards[s].takes_inserts || !need_inserts)) weights[s] = 1.0;
    }
    if (std::count(weights.begin(), weights.end(), 1.0) > 0) break;
  }
  const std::vector<int> rest = Apportion(batch - static_cast<int>(can_give), weights, rng);
  for (size_t s = 0; s < n; ++s) counts[s] += rest[s];
  return counts;
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
