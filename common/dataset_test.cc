#include "common/dataset.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "H5Cpp.h"
#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// A fresh, empty directory per test under TEST_TMPDIR.
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

// ---------------------------------------------------------------------------------------------
// writer fixtures: row i of a dataset with obs_dim 3, act_dim 2 and infos goal (2), score ()
// and grid (2, 3) holds values computed from i, so a reader can check any row.

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

float Obs(int64_t i, int j) { return i + 0.01f * j; }
float Act(int64_t i, int j) { return -0.5f * i + j; }
float Next(int64_t i, int j) { return Obs(i, j) + 0.5f; }
float Reward(int64_t i) { return 0.25f * i - 3; }
bool Terminal(int64_t i) { return i % 10 == 9; }
bool Timeout(int64_t i) { return i % 25 == 24 && !Terminal(i); }
float Goal(int64_t i, int j) { return 100.0f * j - i; }
float Score(int64_t i) { return i * i; }
float Grid(int64_t i, int j) { return i * 6 + j; }

// Owns the values a TransitionRow points at.
struct RowValues {
  explicit RowValues(int64_t i) {
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
  TransitionRow Row() const {
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
  std::vector<float> observation, action, next_observation, goal, score, grid;
  float reward;
  bool terminal, timeout;
};

void WriteTestDataset(const std::string& path, int64_t rows, DatasetWriterOptions options) {
  auto writer = DatasetWriter::Create(path, std::move(options));
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int64_t i = 0; i < rows; ++i) {
    ASSERT_TRUE((*writer)->Append(RowValues(i).Row()).ok()) << "row " << i;
  }
  EXPECT_EQ((*writer)->rows(), rows);
  ASSERT_TRUE((*writer)->Close().ok());
}

TEST(DatasetWriterTest, RoundTripsRowsInfosAndMetadataAcrossManyChunks) {
  const std::string path = MakeTestDir() + "/data.h5";
  constexpr int64_t kRows = 100;  // 14 full chunks of 7 and a partial one
  WriteTestDataset(path, kRows, TestOptions());

  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, kRows);
  EXPECT_EQ(d->obs_dim, 3);
  EXPECT_EQ(d->act_dim, 2);
  EXPECT_FALSE(d->derived_next_observations);
  ASSERT_EQ(d->observations.size(), kRows * 3);
  ASSERT_EQ(d->actions.size(), kRows * 2);
  ASSERT_EQ(d->next_observations.size(), kRows * 3);
  ASSERT_EQ(d->rewards.size(), kRows);
  ASSERT_EQ(d->terminals.size(), kRows);
  ASSERT_EQ(d->timeouts.size(), kRows);
  for (int64_t i = 0; i < kRows; ++i) {
    for (int j = 0; j < 3; ++j) {
      ASSERT_EQ(d->observations[i * 3 + j], Obs(i, j)) << i;
      ASSERT_EQ(d->next_observations[i * 3 + j], Next(i, j)) << i;
    }
    for (int j = 0; j < 2; ++j) ASSERT_EQ(d->actions[i * 2 + j], Act(i, j)) << i;
    ASSERT_EQ(d->rewards[i], Reward(i)) << i;
    ASSERT_EQ(d->terminals[i], Terminal(i) ? 1 : 0) << i;
    ASSERT_EQ(d->timeouts[i], Timeout(i) ? 1 : 0) << i;
  }

  ASSERT_EQ(d->infos.size(), 3);
  const Dataset::Info* goal = d->FindInfo("goal");
  const Dataset::Info* score = d->FindInfo("score");
  const Dataset::Info* grid = d->FindInfo("grid");
  ASSERT_NE(goal, nullptr);
  ASSERT_NE(score, nullptr);
  ASSERT_NE(grid, nullptr);
  EXPECT_EQ(d->FindInfo("missing"), nullptr);
  EXPECT_THAT(goal->dims, ElementsAre(2));
  EXPECT_THAT(score->dims, IsEmpty());
  EXPECT_THAT(grid->dims, ElementsAre(2, 3));
  ASSERT_EQ(goal->values.size(), kRows * 2);
  ASSERT_EQ(score->values.size(), kRows);
  ASSERT_EQ(grid->values.size(), kRows * 6);
  for (int64_t i = 0; i < kRows; ++i) {
    for (int j = 0; j < 2; ++j) ASSERT_EQ(goal->values[i * 2 + j], Goal(i, j));
    ASSERT_EQ(score->values[i], Score(i));
    for (int j = 0; j < 6; ++j) ASSERT_EQ(grid->values[i * 6 + j], Grid(i, j));
  }

  const DatasetWriterOptions options = TestOptions();
  EXPECT_EQ(d->metadata.env_spec, options.metadata.env_spec);
  EXPECT_EQ(d->metadata.collector, options.metadata.collector);
  EXPECT_EQ(d->metadata.seed, options.metadata.seed);
  EXPECT_EQ(d->metadata.prl_version, kVersion);  // filled in by the writer
  EXPECT_THAT(ListDir(path.substr(0, path.rfind('/'))), ElementsAre("data.h5"));
}

TEST(DatasetWriterTest, WritesChunkedExtendibleColumnsAndH5pyBools) {
  const std::string path = MakeTestDir() + "/data.h5";
  WriteTestDataset(path, 20, TestOptions());

  H5::H5File file(path, H5F_ACC_RDONLY);
  for (const char* key : {"observations", "actions", "rewards", "terminals", "timeouts",
                          "next_observations", "infos/goal", "infos/score", "infos/grid"}) {
    SCOPED_TRACE(key);
    const H5::DataSet dataset = file.openDataSet(key);
    const H5::DSetCreatPropList properties = dataset.getCreatePlist();
    ASSERT_EQ(properties.getLayout(), H5D_CHUNKED);
    hsize_t chunk[3] = {0, 0, 0};
    properties.getChunk(3, chunk);
    EXPECT_EQ(chunk[0], 7);
    const H5::DataSpace space = dataset.getSpace();
    hsize_t dims[3], max_dims[3];
    space.getSimpleExtentDims(dims, max_dims);
    EXPECT_EQ(dims[0], 20);
    EXPECT_EQ(max_dims[0], H5S_UNLIMITED);
  }
  const H5::DataSet terminals = file.openDataSet("terminals");
  ASSERT_EQ(terminals.getTypeClass(), H5T_ENUM);
  const H5::EnumType type = terminals.getEnumType();
  EXPECT_EQ(type.getSize(), 1);
  EXPECT_EQ(type.getNmembers(), 2);
  int8_t value = -1;
  type.valueOf("FALSE", &value);
  EXPECT_EQ(value, 0);
  type.valueOf("TRUE", &value);
  EXPECT_EQ(value, 1);
  const H5::Attribute format = file.openGroup("/").openAttribute("format");
  std::string format_value;
  format.read(format.getStrType(), format_value);
  EXPECT_EQ(format_value, kDatasetFormat);
}

TEST(DatasetWriterTest, KeepsAnExplicitPrlVersionAndWritesEmptyDatasets) {
  const std::string path = MakeTestDir() + "/empty.h5";
  DatasetWriterOptions options;
  options.obs_dim = 4;
  options.act_dim = 1;
  options.metadata.prl_version = "9.9.9";
  auto writer = DatasetWriter::Create(path, options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Close().ok());

  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 0);
  EXPECT_EQ(d->obs_dim, 4);
  EXPECT_EQ(d->act_dim, 1);
  EXPECT_THAT(d->infos, IsEmpty());
  EXPECT_EQ(d->metadata.prl_version, "9.9.9");
  EXPECT_THAT(d->EpisodeEnds(), IsEmpty());
}

struct BadOptionsCase {
  std::string name;
  std::function<void(DatasetWriterOptions&)> mutate;
  std::string field;  // the message must name it
};

TEST(DatasetWriterTest, RejectsBadOptionsNamingTheField) {
  const std::vector<BadOptionsCase> cases = {
      {"zero obs_dim", [](auto& o) { o.obs_dim = 0; }, "obs_dim"},
      {"negative act_dim", [](auto& o) { o.act_dim = -1; }, "act_dim"},
      {"zero chunk_rows", [](auto& o) { o.chunk_rows = 0; }, "chunk_rows"},
      {"huge chunk_rows", [](auto& o) { o.chunk_rows = int64_t{1} << 40; }, "chunk_rows"},
      {"compression 10", [](auto& o) { o.compression_level = 10; }, "compression_level"},
      {"compression -1", [](auto& o) { o.compression_level = -1; }, "compression_level"},
      {"empty info name", [](auto& o) { o.infos[1].name = ""; }, "infos[1].name"},
      {"info name with /", [](auto& o) { o.infos[0].name = "a/b"; }, "infos[0].name"},
      {"info name .", [](auto& o) { o.infos[0].name = "."; }, "infos[0].name"},
      {"repeated info name", [](auto& o) { o.infos[2].name = "goal"; }, "infos[2].name"},
      {"zero info dim",
       [](auto& o) {
         o.infos[2].dims = {2, 0};
       },
       "infos[2].dims"},
      {"negative info dim", [](auto& o) { o.infos[0].dims = {-3}; }, "infos[0].dims"},
      {"NUL in collector", [](auto& o) { o.metadata.collector = std::string("a\0b", 3); },
       "metadata.collector"},
  };
  const std::string dir = MakeTestDir();
  for (const BadOptionsCase& c : cases) {
    SCOPED_TRACE(c.name);
    DatasetWriterOptions options = TestOptions();
    c.mutate(options);
    auto writer = DatasetWriter::Create(dir + "/bad.h5", options);
    EXPECT_EQ(writer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(writer.status().message(), HasSubstr(c.field));
  }
  EXPECT_THAT(ListDir(dir), IsEmpty());
}

struct BadRowCase {
  std::string name;
  std::function<void(RowValues&, TransitionRow&)> mutate;
  std::string key;  // the message must name it
};

TEST(DatasetWriterTest, RejectsBadRowsNamingTheKeyAndAppendsNothing) {
  const std::vector<BadRowCase> cases = {
      {"short observation",
       [](RowValues& v, TransitionRow& r) {
         r.observation = absl::MakeSpan(v.observation).first(2);
       },
       "observation"},
      {"long action", [](RowValues& v, TransitionRow& r) { r.action = v.observation; }, "action"},
      {"empty next_observation", [](RowValues&, TransitionRow& r) { r.next_observation = {}; },
       "next_observation"},
      {"missing info column", [](RowValues&, TransitionRow& r) { r.infos.pop_back(); }, "infos"},
      {"wrong info size", [](RowValues& v, TransitionRow& r) { r.infos[2] = v.goal; },
       "infos/grid"},
      {"NaN observation", [](RowValues& v, TransitionRow&) { v.observation[1] = kNaN; },
       "observation[1]"},
      {"infinite action", [](RowValues& v, TransitionRow&) { v.action[0] = kInf; }, "action[0]"},
      {"NaN next_observation", [](RowValues& v, TransitionRow&) { v.next_observation[2] = -kInf; },
       "next_observation[2]"},
      {"infinite reward", [](RowValues&, TransitionRow& r) { r.reward = kInf; }, "reward"},
      {"NaN info", [](RowValues& v, TransitionRow&) { v.score[0] = kNaN; }, "infos/score"},
  };
  const std::string path = MakeTestDir() + "/data.h5";
  auto writer = DatasetWriter::Create(path, TestOptions());
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append(RowValues(0).Row()).ok());
  for (const BadRowCase& c : cases) {
    SCOPED_TRACE(c.name);
    RowValues values(1);
    TransitionRow row = values.Row();
    c.mutate(values, row);
    const absl::Status status = (*writer)->Append(row);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.key));
    EXPECT_EQ((*writer)->rows(), 1);
  }
  ASSERT_TRUE((*writer)->Append(RowValues(1).Row()).ok());
  ASSERT_TRUE((*writer)->Close().ok());

  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 2);
  EXPECT_THAT(d->rewards, ElementsAre(Reward(0), Reward(1)));
  EXPECT_THAT(d->observations,
              ElementsAre(Obs(0, 0), Obs(0, 1), Obs(0, 2), Obs(1, 0), Obs(1, 1), Obs(1, 2)));
}

TEST(DatasetWriterTest, RemovesTheTemporaryFileWhenNotClosed) {
  const std::string dir = MakeTestDir();
  const std::string path = dir + "/data.h5";
  {
    auto writer = DatasetWriter::Create(path, TestOptions());
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE((*writer)->Append(RowValues(i).Row()).ok());
    // mid-write: only the temporary file exists, never a partial file under `path`
    const std::vector<std::string> files = ListDir(dir);
    ASSERT_EQ(files.size(), 1);
    EXPECT_THAT(files[0], HasSubstr("data.h5.tmp."));
    EXPECT_FALSE(Exists(path));
  }
  EXPECT_THAT(ListDir(dir), IsEmpty());
}

TEST(DatasetWriterTest, AKilledWriterLeavesNoFileUnderThePath) {
  const std::string dir = MakeTestDir();
  const std::string path = dir + "/data.h5";
  EXPECT_EXIT(
      {
        auto writer = DatasetWriter::Create(path, TestOptions());
        if (!writer.ok()) _exit(1);
        for (int i = 0; i < 20; ++i) {
          if (!(*writer)->Append(RowValues(i).Row()).ok()) _exit(1);
        }
        _exit(0);  // dies without Close() or destructors
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_FALSE(Exists(path));
  const std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1);
  EXPECT_THAT(files[0], HasSubstr("data.h5.tmp."));
}

TEST(DatasetWriterTest, WritersAndReadersOnSeveralThreadsWorkTogether) {
  const std::string dir = MakeTestDir();
  constexpr int kThreads = 4;
  std::vector<absl::Status> results(kThreads);
  {
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const std::string path = absl::StrCat(dir, "/data", t, ".h5");
        auto writer = DatasetWriter::Create(path, TestOptions());
        if (!writer.ok()) {
          results[t] = writer.status();
          return;
        }
        for (int i = 0; i < 50 + t && results[t].ok(); ++i) {
          results[t] = (*writer)->Append(RowValues(i).Row());
        }
        if (results[t].ok()) results[t] = (*writer)->Close();
        absl::StatusOr<Dataset> d = ReadDataset(path);
        if (results[t].ok()) results[t] = d.status();
        if (d.ok() && d->size != 50 + t) results[t] = absl::InternalError("wrong size");
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(results[t].ok()) << t << ": " << results[t];
}

TEST(DatasetWriterTest, RefusesAnExistingPathAtCreateAndAtClose) {
  const std::string dir = MakeTestDir();
  const std::string path = dir + "/data.h5";
  std::ofstream(path) << "precious";
  auto refused = DatasetWriter::Create(path, TestOptions());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.status().message(), HasSubstr(path));
  ASSERT_EQ(unlink(path.c_str()), 0);

  // a file that appears while the writer runs is not replaced either
  {
    auto writer = DatasetWriter::Create(path, TestOptions());
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append(RowValues(0).Row()).ok());
    std::ofstream(path) << "precious";
    EXPECT_EQ((*writer)->Close().code(), absl::StatusCode::kAlreadyExists);
  }
  std::ifstream in(path);
  std::string contents;
  in >> contents;
  EXPECT_EQ(contents, "precious");
  EXPECT_THAT(ListDir(dir), ElementsAre("data.h5"));
}

TEST(DatasetWriterTest, RefusesAMissingDirectory) {
  auto writer = DatasetWriter::Create(MakeTestDir() + "/no/such/dir/data.h5", TestOptions());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
}

TEST(DatasetWriterTest, RefusesAppendAndCloseAfterClose) {
  const std::string path = MakeTestDir() + "/data.h5";
  auto writer = DatasetWriter::Create(path, TestOptions());
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append(RowValues(0).Row()).ok());
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ((*writer)->Append(RowValues(1).Row()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Close().code(), absl::StatusCode::kFailedPrecondition);
  writer->reset();
  EXPECT_TRUE(Exists(path));  // the destructor of a closed writer leaves the file alone
}

TEST(DatasetTest, EpisodeEndsCountsTerminalsTimeoutsAndAnUnfinishedLastEpisode) {
  Dataset d;
  d.size = 7;
  d.terminals = {0, 1, 0, 0, 0, 0, 0};
  d.timeouts = {0, 0, 0, 1, 0, 0, 0};
  EXPECT_THAT(d.EpisodeEnds(), ElementsAre(2, 4, 7));
  d.terminals[6] = 1;
  EXPECT_THAT(d.EpisodeEnds(), ElementsAre(2, 4, 7));
}

// ---------------------------------------------------------------------------------------------
// reader: files written with the HDF5 C++ API directly, as other tools would write them

// One dataset to write: its shape, values (converted to `file_type`) and element type.
struct Column {
  std::vector<hsize_t> dims;
  std::vector<double> values;
  const H5::PredType* file_type = &H5::PredType::IEEE_F64LE;
};
using Columns = std::map<std::string, Column>;

Column Make(std::vector<hsize_t> dims, const H5::PredType& type,
            const std::function<double(size_t)>& value) {
  size_t n = 1;
  for (hsize_t d : dims) n *= d;
  Column c{std::move(dims), {}, &type};
  for (size_t i = 0; i < n; ++i) c.values.push_back(value(i));
  return c;
}

// A D4RL-style file: float64 observations (10, 3) and actions (10, 2), float32 rewards, uint8
// terminals; no timeouts, next_observations or infos.
Columns D4rlColumns() {
  Columns c;
  c["observations"] = Make({10, 3}, H5::PredType::IEEE_F64LE, [](size_t i) { return i * 0.5; });
  c["actions"] = Make({10, 2}, H5::PredType::IEEE_F64LE, [](size_t i) { return -1.0 * i; });
  c["rewards"] = Make({10}, H5::PredType::IEEE_F32LE, [](size_t i) { return i + 0.25; });
  c["terminals"] = Make({10}, H5::PredType::STD_U8LE, [](size_t i) { return i == 3 ? 1 : 0; });
  return c;
}

void WriteColumns(const std::string& path, const Columns& columns) {
  H5::H5File file(path, H5F_ACC_TRUNC);
  for (const auto& [name, column] : columns) {
    const size_t slash = name.rfind('/');
    if (slash != std::string::npos && !file.nameExists(name.substr(0, slash))) {
      file.createGroup(name.substr(0, slash));
    }
    H5::DataSpace space(static_cast<int>(column.dims.size()), column.dims.data());
    H5::DataSet dataset = file.createDataSet(name, *column.file_type, space);
    if (!column.values.empty()) dataset.write(column.values.data(), H5::PredType::NATIVE_DOUBLE);
  }
}

TEST(ReadDatasetTest, ReadsAD4rlFileWithoutOptionalKeys) {
  const std::string path = MakeTestDir() + "/d4rl.h5";
  Columns columns = D4rlColumns();
  columns["extra_key"] = Make({4}, H5::PredType::STD_I32LE, [](size_t i) { return i; });
  ASSERT_NO_THROW(WriteColumns(path, columns));

  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 10);
  EXPECT_EQ(d->obs_dim, 3);
  EXPECT_EQ(d->act_dim, 2);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(d->observations[i], i * 0.5f);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(d->actions[i], -1.0f * i);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(d->rewards[i], i + 0.25f);
  EXPECT_THAT(d->terminals, ElementsAre(0, 0, 0, 1, 0, 0, 0, 0, 0, 0));
  EXPECT_THAT(d->timeouts, ElementsAreArray(std::vector<uint8_t>(10, 0)));
  EXPECT_THAT(d->infos, IsEmpty());
  EXPECT_EQ(d->metadata.env_spec, "");
  EXPECT_EQ(d->metadata.seed, 0);

  // next observation = the following row's, except at an episode end (row 3, terminal) and
  // the last row, which repeat their own observation
  ASSERT_TRUE(d->derived_next_observations);
  ASSERT_EQ(d->next_observations.size(), 30);
  for (int i = 0; i < 10; ++i) {
    const int source = (i == 3 || i == 9) ? i : i + 1;
    for (int j = 0; j < 3; ++j) {
      ASSERT_EQ(d->next_observations[i * 3 + j], d->observations[source * 3 + j]) << i;
    }
  }
  EXPECT_THAT(d->EpisodeEnds(), ElementsAre(4, 10));
}

TEST(ReadDatasetTest, ConvertsForeignFlagTypesAndKeepsOnlyNumericInfos) {
  const std::string path = MakeTestDir() + "/foreign.h5";
  Columns columns = D4rlColumns();
  columns["terminals"] = Make({10}, H5::PredType::IEEE_F64LE, [](size_t i) { return i == 2; });
  columns["timeouts"] =
      Make({10}, H5::PredType::STD_I64BE, [](size_t i) { return i == 6 ? 7 : 0; });
  columns["infos/qpos"] = Make({10, 2, 2}, H5::PredType::STD_I16LE, [](size_t i) { return i; });
  ASSERT_NO_THROW(WriteColumns(path, columns));
  {  // a string info and a nested group, both skipped
    H5::H5File file(path, H5F_ACC_RDWR);
    H5::StrType text(H5::PredType::C_S1, 8);
    const hsize_t n = 10;
    file.createDataSet("infos/names", text, H5::DataSpace(1, &n));
    file.createGroup("infos/nested");
  }

  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->terminals, ElementsAre(0, 0, 1, 0, 0, 0, 0, 0, 0, 0));
  EXPECT_THAT(d->timeouts, ElementsAre(0, 0, 0, 0, 0, 0, 1, 0, 0, 0));
  ASSERT_EQ(d->infos.size(), 1);
  EXPECT_EQ(d->infos[0].name, "qpos");
  EXPECT_THAT(d->infos[0].dims, ElementsAre(2, 2));
  ASSERT_EQ(d->infos[0].values.size(), 40);
  EXPECT_EQ(d->infos[0].values[39], 39.0f);
  EXPECT_THAT(d->EpisodeEnds(), ElementsAre(3, 7, 10));
  // a timeout ends an episode for derived next observations too
  constexpr size_t kRow5 = 15, kRow6 = 18;  // rows 5 and 6 of the (10, 3) observations
  EXPECT_EQ(d->next_observations[kRow6], d->observations[kRow6]);
  EXPECT_EQ(d->next_observations[kRow5], d->observations[kRow6]);
}

TEST(ReadDatasetTest, MissingFileIsNotFound) {
  const std::string path = MakeTestDir() + "/none.h5";
  absl::StatusOr<Dataset> d = ReadDataset(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr(path));
}

TEST(ReadDatasetTest, TextAndEmptyFilesAreNotHdf5) {
  const std::string dir = MakeTestDir();
  std::ofstream(dir + "/text.h5") << "observations,actions\n1,2\n";
  std::ofstream(dir + "/empty.h5").flush();
  for (const std::string name : {"text.h5", "empty.h5"}) {
    absl::StatusOr<Dataset> d = ReadDataset(absl::StrCat(dir, "/", name));
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
    EXPECT_THAT(d.status().message(), AllOf(HasSubstr(name), HasSubstr("not an HDF5 file")));
  }
}

TEST(ReadDatasetTest, TruncatedFileIsDataLoss) {
  const std::string path = MakeTestDir() + "/data.h5";
  WriteTestDataset(path, 500, TestOptions());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_EQ(truncate(path.c_str(), st.st_size / 2), 0);
  absl::StatusOr<Dataset> d = ReadDataset(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(path));
}

TEST(ReadDatasetTest, CorruptChunkFailsItsChecksum) {
  const std::string path = MakeTestDir() + "/data.h5";
  WriteTestDataset(path, 20, TestOptions());
  haddr_t address = 0;
  {  // where the first chunk of rewards lies in the file
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::DataSet rewards = file.openDataSet("rewards");
    hsize_t offset[1];
    unsigned filter_mask = 0;
    hsize_t size = 0;
    const H5::DataSpace space = rewards.getSpace();
    ASSERT_GE(
        H5Dget_chunk_info(rewards.getId(), space.getId(), 0, offset, &filter_mask, &address, &size),
        0);
  }
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(address + 2);
    const char byte = static_cast<char>(file.get() ^ 0x10);
    file.seekp(address + 2);
    file.put(byte);
  }
  absl::StatusOr<Dataset> d = ReadDataset(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), AllOf(HasSubstr(path), HasSubstr("'rewards'")));
}

struct MalformedCase {
  std::string name;
  std::function<void(Columns&)> mutate;
  std::vector<std::string> message_parts;  // the message names the key (and counts)
};

TEST(ReadDatasetTest, RefusesMalformedFilesNamingTheKey) {
  const auto f64 = &H5::PredType::IEEE_F64LE;
  const std::vector<MalformedCase> cases = {
      {"no observations",
       [](Columns& c) { c.erase("observations"); },
       {"'observations'", "missing"}},
      {"no actions", [](Columns& c) { c.erase("actions"); }, {"'actions'", "missing"}},
      {"no rewards", [](Columns& c) { c.erase("rewards"); }, {"'rewards'", "missing"}},
      {"no terminals", [](Columns& c) { c.erase("terminals"); }, {"'terminals'", "missing"}},
      {"1-D observations",
       [&](Columns& c) {
         c["observations"] = Column{{30}, std::vector<double>(30), f64};
       },
       {"'observations'", "rank 1", "expected 2"}},
      {"3-D actions",
       [&](Columns& c) {
         c["actions"] = Column{{10, 1, 2}, std::vector<double>(20), f64};
       },
       {"'actions'", "rank 3"}},
      {"2-D rewards",
       [&](Columns& c) {
         c["rewards"] = Column{{10, 1}, std::vector<double>(10), f64};
       },
       {"'rewards'", "rank 2", "expected 1"}},
      {"2-D terminals",
       [&](Columns& c) {
         c["terminals"] = Column{{10, 2}, std::vector<double>(20), f64};
       },
       {"'terminals'", "rank 2"}},
      {"zero-width observations",
       [&](Columns& c) {
         c["observations"] = Column{{10, 0}, {}, f64};
       },
       {"'observations'", "0 columns"}},
      {"short rewards",
       [&](Columns& c) {
         c["rewards"] = Column{{9}, std::vector<double>(9), f64};
       },
       {"'rewards' has 9 rows but 'observations' has 10"}},
      {"long actions",
       [&](Columns& c) {
         c["actions"] = Column{{11, 2}, std::vector<double>(22), f64};
       },
       {"'actions' has 11 rows but 'observations' has 10"}},
      {"short timeouts",
       [&](Columns& c) {
         c["timeouts"] = Column{{8}, std::vector<double>(8), f64};
       },
       {"'timeouts' has 8 rows but 'observations' has 10"}},
      {"short next_observations",
       [&](Columns& c) {
         c["next_observations"] = Column{{5, 3}, std::vector<double>(15), f64};
       },
       {"'next_observations' has 5 rows but 'observations' has 10"}},
      {"narrow next_observations",
       [&](Columns& c) {
         c["next_observations"] = Column{{10, 2}, std::vector<double>(20), f64};
       },
       {"'next_observations'", "2 columns but 'observations' has 3"}},
      {"short info",
       [&](Columns& c) {
         c["infos/goal"] = Column{{4, 2}, std::vector<double>(8), f64};
       },
       {"'infos/goal' has 4 rows but 'observations' has 10"}},
      {"NaN observation",
       [](Columns& c) { c["observations"].values[7] = std::nan(""); },
       {"'observations'", "row 2", "column 1", "non-finite"}},
      {"infinite action",
       [](Columns& c) { c["actions"].values[0] = HUGE_VAL; },
       {"'actions'", "row 0", "non-finite"}},
      {"infinite reward",
       [](Columns& c) { c["rewards"].values[9] = -HUGE_VAL; },
       {"'rewards'", "row 9", "non-finite"}},
      {"NaN next_observation",
       [&](Columns& c) {
         c["next_observations"] = Column{{10, 3}, std::vector<double>(30, std::nan("")), f64};
       },
       {"'next_observations'", "non-finite"}},
      {"NaN terminal",
       [&](Columns& c) {
         c["terminals"] = Column{{10}, std::vector<double>(10, std::nan("")), f64};
       },
       {"'terminals'", "NaN"}},
      {"string observations",
       [](Columns& c) { c.erase("observations"); },  // written as strings below
       {"'observations'", "unsupported element type"}},
  };
  const std::string dir = MakeTestDir();
  for (size_t i = 0; i < cases.size(); ++i) {
    const MalformedCase& c = cases[i];
    SCOPED_TRACE(c.name);
    const std::string path = absl::StrCat(dir, "/case", i, ".h5");
    Columns columns = D4rlColumns();
    c.mutate(columns);
    ASSERT_NO_THROW(WriteColumns(path, columns));
    if (c.name == "string observations") {
      H5::H5File file(path, H5F_ACC_RDWR);
      const hsize_t dims[2] = {10, 3};
      file.createDataSet("observations", H5::StrType(H5::PredType::C_S1, 4),
                         H5::DataSpace(2, dims));
    }
    absl::StatusOr<Dataset> d = ReadDataset(path);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
    EXPECT_THAT(d.status().message(), HasSubstr(path));
    for (const std::string& part : c.message_parts) {
      EXPECT_THAT(d.status().message(), HasSubstr(part));
    }
  }
}

TEST(ReadDatasetTest, RefusesAGroupWhereADatasetBelongs) {
  const std::string path = MakeTestDir() + "/group.h5";
  Columns columns = D4rlColumns();
  columns.erase("actions");
  ASSERT_NO_THROW(WriteColumns(path, columns));
  {
    H5::H5File file(path, H5F_ACC_RDWR);
    file.createGroup("actions");
  }
  absl::StatusOr<Dataset> d = ReadDataset(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), AllOf(HasSubstr("'actions'"), HasSubstr("not a dataset")));
}

}  // namespace
}  // namespace prl
