#include "replay/replay_service.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kToken[] = "token-1";

v1::TableConfig Config() {
  v1::TableConfig config;
  config.set_name("t");
  config.set_capacity(100);
  v1::ColumnSpec* x = config.add_signature();
  x->set_name("x");
  x->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  x->add_shape(2);
  return config;
}

v1::InsertRequest Rows(int64_t n, float value, bool keys = true) {
  v1::InsertRequest request;
  request.set_table("t");
  request.set_return_keys(keys);
  v1::NamedTensor* x = request.add_columns();
  x->set_name("x");
  TensorToProto(HostTensor::FromFloats({n, 2}, std::vector<float>(2 * n, value)).view(),
                x->mutable_tensor());
  return request;
}

class ReplayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ShardOptions options;
    options.checkpoint_dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/service_ckpt");
    shard_ = *ReplayShard::Create(options, *registry_);
    service_ = std::make_unique<ReplayServiceImpl>(ReplayServiceOptions{kToken}, shard_.get());
    auto server = prl::testing::InProcessServer::Start("replay", {service_.get()}, registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::ReplayService::NewStub(server_->channel());
    v1::CreateTableRequest create;
    *create.mutable_config() = Config();
    v1::CreateTableResponse created;
    ASSERT_TRUE(stub_->CreateTable(server_->Context(kToken).get(), create, &created).ok());
  }

  grpc::Status InsertStream(const std::vector<v1::InsertRequest>& requests,
                            v1::InsertResponse* response, const std::string& token = kToken) {
    auto context = server_->Context(token);
    auto writer = stub_->Insert(context.get(), response);
    for (const auto& r : requests) {
      if (!writer->Write(r)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Streams raw request bytes, as a client with a broken encoder would.
  grpc::Status InsertBytesStream(const std::vector<std::string>& requests,
                                 v1::InsertResponse* response) {
    auto context = server_->Context(kToken);
    const grpc::internal::RpcMethod method("/prl.v1.ReplayService/Insert",
                                           grpc::internal::RpcMethod::CLIENT_STREAMING);
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
            server_->channel().get(), method, context.get(), response));
    for (const std::string& bytes : requests) {
      grpc::Slice slice(bytes);
      if (!writer->Write(grpc::ByteBuffer(&slice, 1))) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ReplayShard> shard_;
  std::unique_ptr<ReplayServiceImpl> service_;
  std::unique_ptr<prl::testing::InProcessServer> server_;
  std::unique_ptr<v1::ReplayService::Stub> stub_;
};

TEST_F(ReplayServiceTest, InsertStreamSampleInfoAndMetrics) {
  v1::InsertResponse inserted;
  ASSERT_TRUE(InsertStream({Rows(3, 1.0f), Rows(2, 2.0f)}, &inserted).ok());
  EXPECT_EQ(inserted.num_inserted(), 5);
  EXPECT_THAT(inserted.keys(), ElementsAre(1, 2, 3, 4, 5));

  v1::SampleRequest sample;
  sample.set_table("t");
  sample.set_batch_size(16);
  v1::SampleResponse sampled;
  ASSERT_TRUE(stub_->Sample(server_->Context(kToken).get(), sample, &sampled).ok());
  EXPECT_EQ(sampled.keys_size(), 16);
  EXPECT_THAT(sampled.columns(0).tensor().shape(), ElementsAre(16, 2));

  v1::InfoRequest info_request;
  v1::InfoResponse info;
  ASSERT_TRUE(stub_->Info(server_->Context().get(), info_request, &info).ok());
  ASSERT_EQ(info.tables_size(), 1);
  EXPECT_EQ(info.tables(0).size(), 5);
  EXPECT_EQ(info.tables(0).sampled_total(), 16);

  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(*metrics, HasSubstr("prl_replay_inserts_total{table=\"t\"} 5"));
  EXPECT_THAT(*metrics, HasSubstr("prl_replay_samples_total{table=\"t\"} 16"));
  EXPECT_THAT(*metrics, HasSubstr("prl_replay_table_size{table=\"t\"} 5"));
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"replay\""));
}

TEST_F(ReplayServiceTest, BadRequestInStreamKeepsEarlierRows) {
  v1::InsertRequest bad = Rows(2, 3.0f);
  bad.mutable_columns(0)->mutable_tensor()->mutable_data()->resize(3);
  v1::InsertResponse inserted;
  grpc::Status s = InsertStream({Rows(4, 1.0f), bad, Rows(1, 1.0f)}, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("insert request 1"));
  EXPECT_THAT(s.error_message(), HasSubstr("columns[0] ('x')"));
  EXPECT_EQ(shard_->Info("t")->tables(0).size(), 4);

  v1::InsertRequest unknown = Rows(1, 1.0f);
  unknown.set_table("nope");
  s = InsertStream({unknown}, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("tables: [t]"));
}

// A table whose rows are 8 KiB, so that a request of 40 rows (320 KiB) is large enough to be
// inserted while the stream's next request is received.
constexpr int kWide = 2048;
constexpr int kLargeRows = 40;

v1::InsertRequest WideRows(float value) {
  v1::InsertRequest request;
  request.set_table("wide");
  request.set_return_keys(true);
  v1::NamedTensor* x = request.add_columns();
  x->set_name("x");
  TensorToProto(
      HostTensor::FromFloats({kLargeRows, kWide}, std::vector<float>(kLargeRows * kWide, value))
          .view(),
      x->mutable_tensor());
  return request;
}

TEST_F(ReplayServiceTest, LargeRequestsOfAStreamAreInsertedInOrder) {
  v1::CreateTableRequest create;
  create.mutable_config()->set_name("wide");
  create.mutable_config()->set_capacity(1000);
  create.mutable_config()->set_sampler(v1::SAMPLER_FIFO);
  v1::ColumnSpec* x = create.mutable_config()->add_signature();
  x->set_name("x");
  x->set_dtype(v1::Tensor::DTYPE_FLOAT32);
  x->add_shape(kWide);
  v1::CreateTableResponse created;
  ASSERT_TRUE(stub_->CreateTable(server_->Context(kToken).get(), create, &created).ok());

  std::vector<v1::InsertRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(WideRows(static_cast<float>(i)));
  v1::InsertResponse inserted;
  grpc::Status s = InsertStream(requests, &inserted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(inserted.num_inserted(), 6 * kLargeRows);
  ASSERT_EQ(inserted.keys_size(), 6 * kLargeRows);
  for (int i = 0; i < inserted.keys_size(); ++i) EXPECT_EQ(inserted.keys(i), i + 1);

  // FIFO: the oldest first; each request's rows in the place it was sent.
  v1::SampleRequest sample;
  sample.set_table("wide");
  sample.set_batch_size(6 * kLargeRows);
  v1::SampleResponse sampled;
  ASSERT_TRUE(stub_->Sample(server_->Context(kToken).get(), sample, &sampled).ok());
  const std::string& data = sampled.columns(0).tensor().data();
  ASSERT_EQ(data.size(), sizeof(float) * 6 * kLargeRows * kWide);
  for (int row = 0; row < 6 * kLargeRows; ++row) {
    float first, last;
    std::memcpy(&first, data.data() + sizeof(float) * row * kWide, sizeof(float));
    std::memcpy(&last, data.data() + sizeof(float) * ((row + 1) * kWide - 1), sizeof(float));
    ASSERT_EQ(first, static_cast<float>(row / kLargeRows)) << "row " << row;
    ASSERT_EQ(last, static_cast<float>(row / kLargeRows)) << "row " << row;
  }

  // an error in a large request ends the stream after the rows before it; the one sent after
  // it is not inserted.
  requests.resize(4);
  requests[2].mutable_columns(0)->mutable_tensor()->mutable_data()->resize(100);
  s = InsertStream(requests, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("insert request 2 (", 2 * kLargeRows, " rows inserted")));
  EXPECT_EQ(shard_->Info("wide")->tables(0).size(), 8 * kLargeRows);
}

TEST_F(ReplayServiceTest, MalformedRequestBytesEndTheStreamAndKeepEarlierRows) {
  const std::string good = Rows(2, 1.0f).SerializeAsString();
  v1::InsertResponse inserted;
  grpc::Status s = InsertBytesStream({good, good.substr(0, good.size() - 3), good}, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("insert request 1 (2 rows inserted before it): malformed InsertRequest"));
  EXPECT_EQ(shard_->Info("t")->tables(0).size(), 2);

  // unknown fields are skipped, as a newer client may send them.
  s = InsertBytesStream({good + std::string("\xa8\x06\x01", 3)}, &inserted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(inserted.num_inserted(), 2);
  EXPECT_EQ(shard_->Info("t")->tables(0).size(), 4);
}

TEST_F(ReplayServiceTest, SampleHonoursTimeoutAndMutatingCallsNeedToken) {
  v1::SampleRequest sample;
  sample.set_table("t");
  sample.set_batch_size(1);
  sample.set_timeout_ms(50);
  v1::SampleResponse sampled;
  grpc::Status s = stub_->Sample(server_->Context(kToken).get(), sample, &sampled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  EXPECT_EQ(stub_->Sample(server_->Context().get(), sample, &sampled).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::InsertResponse inserted;
  EXPECT_EQ(InsertStream({Rows(1, 1.0f)}, &inserted, "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(shard_->Info("t")->tables(0).size(), 0);
}

// A Sample waiting on an empty table holds a handler thread: past the limit a Sample only
// looks, so that waiting samplers cannot take the threads inserts, Info and health need.
TEST_F(ReplayServiceTest, WaitingSamplesAreBounded) {
  v1::SampleRequest sample;
  sample.set_table("t");
  sample.set_batch_size(1);
  sample.set_timeout_ms(30000);
  const int limit = ReplayServiceOptions().max_waiting_samples;
  std::atomic<int> served{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < limit; ++i) {
    waiters.emplace_back([&] {
      v1::SampleResponse sampled;
      if (stub_->Sample(server_->Context(kToken).get(), sample, &sampled).ok()) ++served;
    });
  }
  for (int i = 0; i < 2000 && service_->samples_in_progress() < limit; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(service_->samples_in_progress(), limit);
  v1::SampleResponse sampled;
  const grpc::Status refused = stub_->Sample(server_->Context(kToken).get(), sample, &sampled);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(refused.error_message(), HasSubstr("already waiting"));
  // inserts and Info are still served; the rows end the waits
  v1::InfoRequest info_request;
  v1::InfoResponse info;
  EXPECT_TRUE(stub_->Info(server_->Context().get(), info_request, &info).ok());
  v1::InsertResponse inserted;
  ASSERT_TRUE(InsertStream({Rows(3, 1.0f)}, &inserted).ok());
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(served.load(), limit);
  // a Sample that can be served at once is, whatever the others do
  EXPECT_TRUE(stub_->Sample(server_->Context(kToken).get(), sample, &sampled).ok());
}

TEST_F(ReplayServiceTest, UpdatePrioritiesAndCheckpoint) {
  v1::InsertResponse inserted;
  ASSERT_TRUE(InsertStream({Rows(2, 1.0f)}, &inserted).ok());
  v1::UpdatePrioritiesRequest update;
  update.set_table("t");
  update.add_keys(1);
  update.add_keys(77);
  update.add_priorities(2.0);
  update.add_priorities(2.0);
  v1::UpdatePrioritiesResponse updated;
  ASSERT_TRUE(stub_->UpdatePriorities(server_->Context(kToken).get(), update, &updated).ok());
  EXPECT_EQ(updated.num_updated(), 1);
  EXPECT_EQ(updated.num_missing(), 1);

  v1::CheckpointResponse checkpoint;
  ASSERT_TRUE(
      stub_->Checkpoint(server_->Context(kToken).get(), v1::CheckpointRequest(), &checkpoint).ok());
  EXPECT_THAT(checkpoint.path(), HasSubstr("replay.ckpt"));
  EXPECT_THAT(checkpoint.tables(), ElementsAre("t"));

  v1::DeleteTableRequest del;
  del.set_table("t");
  v1::DeleteTableResponse deleted;
  ASSERT_TRUE(stub_->DeleteTable(server_->Context(kToken).get(), del, &deleted).ok());
  EXPECT_EQ(deleted.items_removed(), 2);
}

TEST_F(ReplayServiceTest, ServesHealthForTheServerAndTheReplayService) {
  EXPECT_TRUE(CheckHealth(server_->channel(), {}).ok());
  EXPECT_TRUE(CheckHealth(server_->channel(), {}, "prl.v1.ReplayService").ok());
}

TEST_F(ReplayServiceTest, AnInsertsMaxWaitEndsTheStreamWithWhatWasStored) {
  // a table that takes 5 rows before its limiter wants samples (1 per insert, buffer 4).
  v1::CreateTableRequest create;
  *create.mutable_config() = Config();
  create.mutable_config()->set_name("limited");
  create.mutable_config()->mutable_rate_limiter()->set_samples_per_insert(1);
  create.mutable_config()->mutable_rate_limiter()->set_error_buffer(4);
  v1::CreateTableResponse created;
  ASSERT_TRUE(stub_->CreateTable(server_->Context(kToken).get(), create, &created).ok());

  // 8 rows that may wait 20 ms: 5 go in, the stream ends without an error and without reading
  // the request after it.
  v1::InsertRequest rows = Rows(8, 1.0f);
  rows.set_table("limited");
  rows.set_max_wait_ms(20);
  v1::InsertRequest after = Rows(1, 2.0f);
  after.set_table("limited");
  v1::InsertResponse inserted;
  grpc::Status s = InsertStream({rows, after}, &inserted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(inserted.num_inserted(), 5);
  EXPECT_THAT(inserted.keys(), ElementsAre(1, 2, 3, 4, 5));
  // its limiter now: diff 5 in [-3, 5] takes no insert and gives 8 samples.
  EXPECT_EQ(inserted.rate_limiter().size(), 5);
  EXPECT_EQ(inserted.rate_limiter().inserted(), 5);
  EXPECT_EQ(inserted.rate_limiter().sampled(), 0);
  EXPECT_EQ(inserted.rate_limiter().insert_permits(), 0);
  EXPECT_EQ(inserted.rate_limiter().sample_permits(), 8);
  EXPECT_EQ(shard_->Info("limited")->tables(0).size(), 5);

  // samples and Info report it too.
  v1::SampleRequest sample;
  sample.set_table("limited");
  sample.set_batch_size(3);
  v1::SampleResponse sampled;
  ASSERT_TRUE(stub_->Sample(server_->Context(kToken).get(), sample, &sampled).ok());
  EXPECT_EQ(sampled.rate_limiter().sampled(), 3);
  EXPECT_EQ(sampled.rate_limiter().sample_permits(), 5);
  EXPECT_EQ(sampled.rate_limiter().insert_permits(), 3);
  v1::InfoRequest info_request;
  info_request.set_table("limited");
  v1::InfoResponse info;
  ASSERT_TRUE(stub_->Info(server_->Context().get(), info_request, &info).ok());
  EXPECT_EQ(info.tables(0).rate_limiter().insert_permits(), 3);

  rows.set_max_wait_ms(-1);
  s = InsertStream({rows}, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("field 'max_wait_ms': -1 is not allowed"));
}

TEST_F(ReplayServiceTest, InsertErrorsNameTheMissingAndUnexpectedColumns) {
  const int64_t size = shard_->Info("t")->tables(0).size();
  v1::InsertRequest misnamed = Rows(1, 1.0f);
  misnamed.mutable_columns(0)->set_name("y");
  v1::InsertResponse inserted;
  grpc::Status s = InsertStream({misnamed}, &inserted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("field 'columns': missing 'x'; not columns of the "
                                           "table: 'y' (table 't' has columns 'x')"));
  v1::InsertRequest extra = Rows(1, 1.0f);
  *extra.add_columns() = extra.columns(0);
  extra.mutable_columns(1)->set_name("z");
  s = InsertStream({extra}, &inserted);
  EXPECT_THAT(s.error_message(), HasSubstr("not columns of the table: 'z' (table 't'"));
  EXPECT_EQ(shard_->Info("t")->tables(0).size(), size);
}

}  // namespace
}  // namespace prl::replay
