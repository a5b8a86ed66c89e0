#include "learner/dataset_store.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dataset_reader.h"
#include "common/dataset_writer.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class DatasetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/datasets_",
                        testing::UnitTest::GetInstance()->current_test_info()->name());
    auto store = DatasetStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // Writes a two-episode dataset where experiment `experiment` stages `name`.
  std::string Stage(const std::string& name, const std::string& experiment) {
    std::string path = store_->StagingPathOf(name, experiment);
    DatasetWriterOptions options;
    options.obs_dim = 2;
    options.act_dim = 1;
    options.metadata.collector = "random";
    auto writer = DatasetWriter::Create(path, options);
    EXPECT_TRUE(writer.ok()) << writer.status();
    const std::vector<float> obs = {0.5f, -1}, act = {0.25f};
    for (int i = 0; i < 5; ++i) {
      TransitionRow row;
      row.observation = obs;
      row.action = act;
      row.next_observation = obs;
      row.reward = static_cast<float>(i);
      row.terminal = i == 2;
      row.timeout = i == 4;
      EXPECT_TRUE((*writer)->Append(row).ok());
    }
    EXPECT_TRUE((*writer)->Close().ok());
    return path;
  }

  v1::DatasetInfo Info(const std::string& name, const std::string& experiment) {
    v1::DatasetInfo info;
    info.set_name(name);
    info.set_experiment_id(experiment);
    info.set_transitions(5);
    info.set_episodes(2);
    info.set_terminated_episodes(1);
    info.set_obs_dim(2);
    info.set_action_dim(1);
    info.set_spec("name: \"collect\"\nkind: KIND_COLLECT\n");
    return info;
  }

  std::string dir_;
  std::unique_ptr<DatasetStore> store_;
};

TEST_F(DatasetStoreTest, StoresAFileWithItsRecordAndFindsItAgain) {
  const std::string staged = Stage("maze-planner", "exp-000001");
  absl::StatusOr<v1::DatasetInfo> stored =
      store_->Commit(staged, Info("maze-planner", "exp-000001"));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_FALSE(Exists(staged));
  const std::string path = dir_ + "/maze-planner.hdf5";
  EXPECT_EQ(stored->path(), path);
  EXPECT_TRUE(Exists(dir_ + "/maze-planner.info"));
  EXPECT_EQ(stored->version(), 1);
  EXPECT_EQ(stored->content_hash(), *Sha256File(path));
  EXPECT_EQ(stored->size_bytes(), static_cast<int64_t>(ReadBytes(path).size()));
  EXPECT_GT(stored->create_time().seconds(), 0);
  EXPECT_TRUE(store_->Exists("maze-planner"));

  // a fresh store on the same directory reads the same record; the hash is stable
  auto reopened = DatasetStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  absl::StatusOr<v1::DatasetInfo> found = (*reopened)->Verify("maze-planner");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->content_hash(), stored->content_hash());
  EXPECT_EQ(found->transitions(), 5);
  EXPECT_EQ(found->episodes(), 2);
  EXPECT_EQ(found->terminated_episodes(), 1);
  EXPECT_EQ(found->experiment_id(), "exp-000001");
  EXPECT_THAT(found->spec(), HasSubstr("KIND_COLLECT"));
  // the file is an ordinary dataset
  absl::StatusOr<Dataset> data = ReadDataset(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->EpisodeEnds(), ElementsAre(3, 5));

  std::vector<std::string> problems;
  const std::vector<v1::DatasetInfo> all = store_->List(&problems);
  EXPECT_THAT(problems, IsEmpty());
  ASSERT_THAT(all, SizeIs(1));
  EXPECT_EQ(all[0].name(), "maze-planner");
  EXPECT_EQ(store_->DescribeNames(), "maze-planner");
}

TEST_F(DatasetStoreTest, ANameIsWrittenOnce) {
  ASSERT_TRUE(store_->Commit(Stage("d", "exp-000001"), Info("d", "exp-000001")).ok());
  const std::string before = ReadBytes(dir_ + "/d.hdf5");
  const std::string staged = Stage("d", "exp-000002");
  absl::StatusOr<v1::DatasetInfo> again = store_->Commit(staged, Info("d", "exp-000002"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("written by exp-000001"));
  EXPECT_EQ(ReadBytes(dir_ + "/d.hdf5"), before);
  // the same experiment committing again (a resumed run) gets the stored record
  absl::StatusOr<v1::DatasetInfo> same = store_->Commit(staged, Info("d", "exp-000001"));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->experiment_id(), "exp-000001");
}

TEST_F(DatasetStoreTest, AResumedRunFinishesAnInterruptedCommit) {
  const std::string staged = Stage("d", "exp-000003");
  ASSERT_TRUE(store_->Commit(staged, Info("d", "exp-000003")).ok());
  // as if the learner died between writing the record and the rename
  ASSERT_EQ(std::rename((dir_ + "/d.hdf5").c_str(), staged.c_str()), 0);
  absl::StatusOr<v1::DatasetInfo> half = store_->Lookup("d");
  EXPECT_EQ(half.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(half.status().message(), HasSubstr("which is missing"));
  EXPECT_TRUE(store_->Exists("d"));
  absl::StatusOr<v1::DatasetInfo> finished = store_->Commit(staged, Info("d", "exp-000003"));
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_TRUE(store_->Verify("d").ok());
  EXPECT_FALSE(Exists(staged));
}

TEST_F(DatasetStoreTest, ACorruptRecordIsRefusedNamedAndLeftInPlace) {
  ASSERT_TRUE(store_->Commit(Stage("d", "exp-000001"), Info("d", "exp-000001")).ok());
  const std::string record = dir_ + "/d.info";
  std::string bytes = ReadBytes(record);
  bytes[bytes.size() - 3] ^= 0x40;
  WriteBytes(record, bytes);
  absl::StatusOr<v1::DatasetInfo> found = store_->Lookup("d");
  EXPECT_EQ(found.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(found.status().message(), HasSubstr(record));
  EXPECT_EQ(ReadBytes(record), bytes);
  EXPECT_TRUE(Exists(dir_ + "/d.hdf5"));
  std::vector<std::string> problems;
  EXPECT_THAT(store_->List(&problems), IsEmpty());
  EXPECT_THAT(problems, ElementsAre(HasSubstr(record)));
  // the name stays taken
  EXPECT_TRUE(store_->Exists("d"));
  EXPECT_EQ(store_->Commit(Stage("d", "exp-000002"), Info("d", "exp-000002")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadBytes(record), bytes);
}

TEST_F(DatasetStoreTest, AChangedFileIsRefusedNamedAndLeftInPlace) {
  ASSERT_TRUE(store_->Commit(Stage("d", "exp-000001"), Info("d", "exp-000001")).ok());
  const std::string path = dir_ + "/d.hdf5";
  std::string bytes = ReadBytes(path);
  bytes[bytes.size() / 2] ^= 0x01;  // same size, other content
  WriteBytes(path, bytes);
  EXPECT_TRUE(store_->Lookup("d").ok());  // Lookup checks the size only
  absl::StatusOr<v1::DatasetInfo> verified = store_->Verify("d");
  EXPECT_EQ(verified.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(verified.status().message(), HasSubstr(path));
  EXPECT_THAT(verified.status().message(), HasSubstr("left in place"));
  EXPECT_EQ(ReadBytes(path), bytes);

  WriteBytes(path, bytes.substr(0, 100));  // truncated
  absl::StatusOr<v1::DatasetInfo> truncated = store_->Lookup("d");
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(truncated.status().message(), HasSubstr("has 100 bytes"));
  EXPECT_TRUE(Exists(path));
}

TEST_F(DatasetStoreTest, AFileWithoutARecordIsRefusedAndKeepsItsName) {
  WriteBytes(dir_ + "/stray.hdf5", "not written by the store");
  absl::StatusOr<v1::DatasetInfo> found = store_->Lookup("stray");
  EXPECT_EQ(found.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(found.status().message(), HasSubstr("has no record"));
  EXPECT_TRUE(store_->Exists("stray"));
  absl::StatusOr<v1::DatasetInfo> commit =
      store_->Commit(Stage("stray", "exp-000001"), Info("stray", "exp-000001"));
  EXPECT_EQ(commit.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadBytes(dir_ + "/stray.hdf5"), "not written by the store");
}

TEST_F(DatasetStoreTest, NamesAreCheckedAndUnknownNamesListWhatExists) {
  ASSERT_TRUE(store_->Commit(Stage("a", "exp-000001"), Info("a", "exp-000001")).ok());
  ASSERT_TRUE(store_->Commit(Stage("b", "exp-000002"), Info("b", "exp-000002")).ok());
  absl::StatusOr<v1::DatasetInfo> missing = store_->Lookup("c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no dataset named 'c'"));
  EXPECT_THAT(missing.status().message(), HasSubstr("stored: a, b"));
  for (const char* bad : {"Bad", "", "x.hdf5", "x.h5", "../x"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(store_->Lookup(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ValidateDatasetName(bad, "collect.output_dataset").code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(ValidateDatasetName("x.hdf5", "collect.output_dataset").message(),
              HasSubstr("collect.output_dataset"));
  EXPECT_TRUE(ValidateDatasetName("maze-planner.v2", "f").ok());
  EXPECT_TRUE(IsDatasetPath("/data/maze.hdf5"));
  EXPECT_TRUE(IsDatasetPath("maze.h5"));
  EXPECT_FALSE(IsDatasetPath("maze-planner"));
  EXPECT_EQ(store_->Commit(Stage("e", "x"), Info("e", "")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetStoreTest, SubmitChecksTheNamesASpecUses) {
  ASSERT_TRUE(store_->Commit(Stage("stored", "exp-000001"), Info("stored", "exp-000001")).ok());
  v1::Experiment queued;
  queued.set_id("exp-000007");
  queued.set_state(v1::EXPERIMENT_STATE_QUEUED);
  queued.mutable_spec()->set_kind(v1::ExperimentSpec::KIND_COLLECT);
  queued.mutable_spec()->mutable_collect()->set_output_dataset("coming");
  const std::vector<v1::Experiment> pending = {queued};

  v1::ExperimentSpec collect;
  collect.set_kind(v1::ExperimentSpec::KIND_COLLECT);
  for (const char* taken : {"stored", "coming"}) {
    collect.mutable_collect()->set_output_dataset(taken);
    const absl::Status s = CheckDatasetReferences(collect, *store_, pending);
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << taken;
    EXPECT_THAT(s.message(), HasSubstr("collect.output_dataset: dataset '"));
  }
  EXPECT_THAT(CheckDatasetReferences(collect, *store_, pending).message(),
              HasSubstr("exp-000007, which is EXPERIMENT_STATE_QUEUED"));
  collect.mutable_collect()->set_output_dataset("fresh");
  EXPECT_TRUE(CheckDatasetReferences(collect, *store_, pending).ok());

  v1::ExperimentSpec prior;
  prior.set_kind(v1::ExperimentSpec::KIND_TRAIN_PRIOR);
  for (const char* known : {"stored", "coming", "/data/elsewhere.hdf5"}) {
    prior.mutable_prior_training()->set_dataset(known);
    EXPECT_TRUE(CheckDatasetReferences(prior, *store_, pending).ok()) << known;
  }
  prior.mutable_prior_training()->set_dataset("unknown");
  const absl::Status s = CheckDatasetReferences(prior, *store_, pending);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("prior_training.dataset: \"unknown\""));
  EXPECT_THAT(s.message(), HasSubstr("stored: stored"));
}

}  // namespace
}  // namespace prl::learner
