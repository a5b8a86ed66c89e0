#include "common/dataset.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::ElementsAre;

TEST(DatasetTest, EpisodeEndsCountsTerminalsTimeoutsAndAnUnfinishedLastEpisode) {
  Dataset d;
  d.size = 7;
  d.terminals = {0, 1, 0, 0, 0, 0, 0};
  d.timeouts = {0, 0, 0, 1, 0, 0, 0};
  EXPECT_THAT(d.EpisodeEnds(), ElementsAre(2, 4, 7));
  d.terminals[6] = 1;
  EXPECT_THAT(d.EpisodeEnds(), ElementsAre(2, 4, 7));
}

}  // namespace
}  // namespace prl
