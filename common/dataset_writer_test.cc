#include "common/dataset_writer.h"

#include <unistd.h>

#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "H5Cpp.h"
#include "absl/strings/str_cat.h"
#include "common/dataset_reader.h"
#include "common/testing/test_dataset.h"
#include "common/version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// DatasetWriter's tests read the files back with ReadDataset (and, for the layout, with the
// HDF5 C++ API); dataset_reader_test.cc covers ReadDataset on files from elsewhere.

namespace prl {
namespace {

using ::prl::testing::Act;
using ::prl::testing::Exists;
using ::prl::testing::Goal;
using ::prl::testing::Grid;
using ::prl::testing::ListDir;
using ::prl::testing::MakeTestDir;
using ::prl::testing::Next;
using ::prl::testing::Obs;
using ::prl::testing::Reward;
using ::prl::testing::RowValues;
using ::prl::testing::Score;
using ::prl::testing::Terminal;
using ::prl::testing::TestOptions;
using ::prl::testing::Timeout;
using ::prl::testing::WriteTestDataset;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

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

}  // namespace
}  // namespace prl
