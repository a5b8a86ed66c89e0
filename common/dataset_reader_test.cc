#include "common/dataset_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "H5Cpp.h"
#include "absl/strings/str_cat.h"
#include "common/testing/test_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::prl::testing::MakeTestDir;
using ::prl::testing::TestOptions;
using ::prl::testing::WriteTestDataset;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Most files here are written with the HDF5 C++ API directly, as other tools would write them;
// the truncated and corrupt-chunk tests damage files that DatasetWriter wrote.

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

// A dataset whose shape claims far more data than the file stores is refused before anything
// is allocated for it: this 10 kB file would have the reader allocate and fill 8 GB (found by
// //fuzz:dataset_fuzzer).
TEST(ReadDatasetTest, RefusesADatasetFarLargerThanWhatTheFileStores) {
  const std::string path = MakeTestDir() + "/unwritten.h5";
  Columns columns = D4rlColumns();
  columns.erase("observations");
  ASSERT_NO_THROW(WriteColumns(path, columns));
  {
    H5::H5File file(path, H5F_ACC_RDWR);
    const hsize_t dims[2] = {hsize_t{1} << 31, 1};
    const hsize_t max_dims[2] = {H5S_UNLIMITED, H5S_UNLIMITED};
    const hsize_t chunk[2] = {4, 1};
    H5::DSetCreatPropList properties;
    properties.setChunk(2, chunk);
    file.createDataSet("observations", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims, max_dims),
                       properties);  // no chunk written
  }
  absl::StatusOr<Dataset> d = ReadDataset(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(d.status().message(), AllOf(HasSubstr("'observations'"), HasSubstr("[2147483648, 1]"),
                                          HasSubstr("stores only 0 bytes")));
}

// ... while data gzip compresses as well as it can (zeros) is read.
TEST(ReadDatasetTest, ReadsHighlyCompressedData) {
  const std::string path = MakeTestDir() + "/zeros.h5";
  constexpr hsize_t kRows = 100000;
  Columns columns = D4rlColumns();
  for (auto& [name, column] : columns) {
    column.dims[0] = kRows;
    column.values.assign(column.dims.size() == 2 ? kRows * column.dims[1] : kRows, 0.0);
  }
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    for (const auto& [name, column] : columns) {
      const hsize_t chunk[2] = {4096, column.dims.size() == 2 ? column.dims[1] : 1};
      H5::DSetCreatPropList properties;
      properties.setChunk(static_cast<int>(column.dims.size()), chunk);
      properties.setDeflate(9);
      H5::DataSet dataset = file.createDataSet(
          name, *column.file_type,
          H5::DataSpace(static_cast<int>(column.dims.size()), column.dims.data()), properties);
      dataset.write(column.values.data(), H5::PredType::NATIVE_DOUBLE);
      if (name == "observations") {  // 2.4 MB of float64 zeros, compressed more than 500:1
        EXPECT_LT(dataset.getStorageSize() * 500, column.values.size() * 8);
      }
    }
  }
  absl::StatusOr<Dataset> d = ReadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, static_cast<int64_t>(kRows));
  EXPECT_EQ(d->observations, std::vector<float>(kRows * 3, 0.0f));
}

}  // namespace
}  // namespace prl
