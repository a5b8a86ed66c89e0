// Fuzzes experiment specs as users write them and the learner checks them on Submit: the input
// is the text of a prl.v1.ExperimentSpec (examples/*.textproto), parsed with cli/spec_file.h's
// ParseSpec (prlctl's parser) and validated with learner/spec_validation.h. Checks that
// parsing refuses only with INVALID_ARGUMENT, that validation answers only OK,
// INVALID_ARGUMENT (the problems SpecProblems lists, joined by "; ") or UNIMPLEMENTED, and that
// a spec it fills validates again to itself (the documented fixed point), also through
// ValidateSpecForLearner.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "cli/spec_file.h"
#include "common/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "learner/spec_validation.h"
#include "proto/experiment.pb.h"

namespace prl::fuzz {
namespace {

using google::protobuf::util::MessageDifferencer;

void TestOneInput(absl::string_view text) {
  const absl::StatusOr<v1::ExperimentSpec> spec = cli::ParseSpec(text, "fuzz.textproto");
  if (!spec.ok()) {
    PRL_CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument) << spec.status();
    PRL_CHECK(!spec.status().message().empty());
    return;
  }

  const std::vector<std::string> problems = learner::SpecProblems(*spec);
  const absl::StatusOr<v1::ExperimentSpec> filled = learner::ValidateAndFillSpec(*spec);
  if (!problems.empty()) {
    PRL_CHECK(filled.status().code() == absl::StatusCode::kInvalidArgument) << filled.status();
    PRL_CHECK(filled.status().message() == absl::StrJoin(problems, "; ")) << filled.status();
    for (const std::string& problem : problems) PRL_CHECK(!problem.empty());
    return;
  }
  if (!filled.ok()) {
    PRL_CHECK(filled.status().code() == absl::StatusCode::kUnimplemented) << filled.status();
    return;
  }

  // filling is a fixed point: the filled spec is valid and fills to itself.
  const absl::StatusOr<v1::ExperimentSpec> again = learner::ValidateAndFillSpec(*filled);
  PRL_CHECK(again.ok()) << again.status() << "\nfilled:\n" << filled->DebugString();
  PRL_CHECK(MessageDifferencer::Equals(*again, *filled))
      << "filled:\n"
      << filled->DebugString() << "\nfilled again:\n"
      << again->DebugString();
  PRL_CHECK(learner::SpecProblems(*filled).empty());

  // on a learner with enough shards for the spec, the learner's check says the same.
  const int shards = static_cast<int>(std::max<int64_t>(1, filled->replay().num_shards()));
  const absl::StatusOr<v1::ExperimentSpec> for_learner =
      learner::ValidateSpecForLearner(*spec, shards);
  PRL_CHECK(for_learner.ok()) << for_learner.status();
  PRL_CHECK(MessageDifferencer::Equals(*for_learner, *filled));
}

}  // namespace
}  // namespace prl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prl::fuzz::TestOneInput(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
