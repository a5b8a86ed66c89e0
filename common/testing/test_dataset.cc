#include "common/testing/test_dataset.h"

#include <dirent.h>
#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace prl::testing {

std::string MakeTestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir =
      absl::StrCat(::testing::TempDir(), "/", info->test_suite_name(), ".", info->name());
  mkdir(dir.c_str(), 0755);
  return dir;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

DatasetWriterOptions TestOptions() {
  DatasetWriterOptions options;
  options.obs_dim = 3;
  options.act_dim = 2;
  options.infos = {{"goal", {2}}, {"score", {}}, {"grid", {2, 3}}};
  options.metadata.env_spec = "domain: \"point_maze\"\ntask { name: \"reach\" }\n";
  options.metadata.collector = "scripted:planner noise=0.1";
  options.metadata.seed = -1234567890123;
  options.chunk_rows = 7;
  options.compression_level = 4;
  return options;
}

RowValues::RowValues(int64_t i) {
  for (int j = 0; j < 3; ++j) observation.push_back(Obs(i, j));
  for (int j = 0; j < 2; ++j) action.push_back(Act(i, j));
  for (int j = 0; j < 3; ++j) next_observation.push_back(Next(i, j));
  for (int j = 0; j < 2; ++j) goal.push_back(Goal(i, j));
  score.push_back(Score(i));
  for (int j = 0; j < 6; ++j) grid.push_back(Grid(i, j));
  reward = Reward(i);
  terminal = Terminal(i);
  timeout = Timeout(i);
}

TransitionRow RowValues::Row() const {
  TransitionRow row;
  row.observation = observation;
  row.action = action;
  row.next_observation = next_observation;
  row.reward = reward;
  row.terminal = terminal;
  row.timeout = timeout;
  row.infos = {goal, score, grid};
  return row;
}

void WriteTestDataset(const std::string& path, int64_t rows, DatasetWriterOptions options) {
  auto writer = DatasetWriter::Create(path, std::move(options));
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int64_t i = 0; i < rows; ++i) {
    ASSERT_TRUE((*writer)->Append(RowValues(i).Row()).ok()) << "row " << i;
  }
  EXPECT_EQ((*writer)->rows(), rows);
  ASSERT_TRUE((*writer)->Close().ok());
}

}  // namespace prl::testing
