// The dataset that the //common dataset tests write and read back: row i of a dataset with
// obs_dim 3, act_dim 2 and infos goal (2), score () and grid (2, 3) holds values computed
// from i, so a reader can check any row. Also a fresh directory per test and small file
// helpers. gtest only: the functions report failures with gtest assertions.
#ifndef PRL_COMMON_TESTING_TEST_DATASET_H_
#define PRL_COMMON_TESTING_TEST_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset_writer.h"

namespace prl::testing {

// A fresh, empty directory per test under TEST_TMPDIR.
std::string MakeTestDir();

// The names in `dir` without "." and ".."; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir);

bool Exists(const std::string& path);

// Options of the test dataset: the dims above, some metadata, chunk_rows 7, gzip level 4.
DatasetWriterOptions TestOptions();

// The values of row i.
inline float Obs(int64_t i, int j) { return i + 0.01f * j; }
inline float Act(int64_t i, int j) { return -0.5f * i + j; }
inline float Next(int64_t i, int j) { return Obs(i, j) + 0.5f; }
inline float Reward(int64_t i) { return 0.25f * i - 3; }
inline bool Terminal(int64_t i) { return i % 10 == 9; }
inline bool Timeout(int64_t i) { return i % 25 == 24 && !Terminal(i); }
inline float Goal(int64_t i, int j) { return 100.0f * j - i; }
inline float Score(int64_t i) { return i * i; }
inline float Grid(int64_t i, int j) { return i * 6 + j; }

// Owns the values a TransitionRow points at.
struct RowValues {
  explicit RowValues(int64_t i);
  // A row pointing into this object, which must outlive it.
  TransitionRow Row() const;

  std::vector<float> observation, action, next_observation, goal, score, grid;
  float reward;
  bool terminal, timeout;
};

// Writes rows 0..rows-1 to a new file at `path` and closes it; fails the test on an error.
void WriteTestDataset(const std::string& path, int64_t rows, DatasetWriterOptions options);

}  // namespace prl::testing

#endif  // PRL_COMMON_TESTING_TEST_DATASET_H_
