// PriorService over real gRPC on loopback, with real LibTorch models (a SPiRL skill model and a
// real NVP flow written as PRL artifacts) and the real batcher and registry.
#include "prior_server/prior_service.h"

#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ATen/ATen.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/client.h"
#include "common/tensor.h"
#include "common/testing/in_process_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/artifact.h"
#include "models/mcat_model.h"
#include "models/real_nvp.h"
#include "models/skill_model.h"
#include "models/task_pair_translator.h"
#include "models/torch_prior_inference.h"
#include "prior_server/model_registry.h"
#include "prior_server/prior_client.h"
#include "prior_server/prior_metrics.h"

namespace prl::prior_server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kObs = 4;
constexpr int kAct = 2;
constexpr int kLatent = 3;

std::unique_ptr<models::SkillModel> MakeSkill(int64_t seed) {
  models::SkillModelOptions options;
  options.obs_dim = kObs;
  options.act_dim = kAct;
  options.horizon = 5;
  options.latent_dim = kLatent;
  options.network.add_hidden_sizes(16);
  options.seed = seed;
  return models::SkillModel::Create(options).value();
}

std::unique_ptr<models::RealNvpFlow> MakeFlow(int64_t seed) {
  models::RealNvpOptions options;
  options.obs_dim = kObs;
  options.act_dim = kAct;
  options.network.add_hidden_sizes(16);
  options.seed = seed;
  return models::RealNvpFlow::Create(options).value();
}

void MakeDirs(const std::string& dir) {
  for (size_t slash = dir.find('/', 1); slash != std::string::npos;
       slash = dir.find('/', slash + 1)) {
    mkdir(dir.substr(0, slash).c_str(), 0755);
  }
  mkdir(dir.c_str(), 0755);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

v1::Tensor Proto(const at::Tensor& t) {
  v1::Tensor proto;
  HostTensor host = HostTensor::Copy(
      TensorView{DType::kFloat32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                 absl::string_view(reinterpret_cast<const char*>(t.contiguous().data_ptr<float>()),
                                   t.numel() * sizeof(float))});
  TensorToProto(std::move(host), &proto);
  return proto;
}

at::Tensor Torch(const v1::Tensor& proto) {
  TensorView view = ViewTensorProto(proto, "t").value();
  std::vector<float> v(view.data<float>().begin(), view.data<float>().end());
  return at::tensor(v).view(std::vector<int64_t>(view.shape.begin(), view.shape.end()));
}

class PriorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(RegistryOptions{}); }

  void Start(RegistryOptions options) {
    server_.reset();
    service_.reset();
    registry_.reset();
    model_dir_ = ::testing::TempDir() + "/models-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
    MakeDirs(model_dir_);
    options.model_dir = model_dir_;
    metrics_registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<PriorMetrics>(*metrics_registry_);
    registry_ = std::make_unique<ModelRegistry>(
        options,
        [](absl::string_view bytes, absl::string_view source, const std::string& name,
           int64_t version) {
          models::PriorLoadOptions load;
          load.name = name;
          load.version = version;
          return models::LoadPrior(bytes, source, load);
        },
        metrics_.get());
    PriorServiceOptions service_options;
    service_options.auth_token = "token-2";
    service_options.max_request_rows = 1000;
    service_ = std::make_unique<PriorServiceImpl>(service_options, registry_.get(), metrics_.get());
    auto server =
        prl::testing::InProcessServer::Start("prior_server", {service_.get()}, metrics_registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::PriorService::NewStub(server_->channel());
  }

  // Writes `model` to the model directory as name/version; returns its path.
  template <typename Model>
  std::string Store(const Model& model, const std::string& name, int64_t version) {
    v1::ModelInfo info;
    info.set_name(name);
    info.set_version(version);
    MakeDirs(model_dir_ + "/" + name);
    const std::string path = absl::StrCat(model_dir_, "/", name, "/v", version, ".prl");
    EXPECT_TRUE(models::WriteModelArtifact(path, model.ToArtifact(info).value()).ok());
    return path;
  }

  grpc::Status Decode(const std::string& name, int64_t version, const at::Tensor& z,
                      const at::Tensor& state, v1::DecodeResponse* response) {
    v1::DecodeRequest request;
    request.mutable_model()->set_name(name);
    request.mutable_model()->set_version(version);
    *request.mutable_z() = Proto(z);
    if (state.defined()) *request.mutable_state() = Proto(state);
    return stub_->Decode(server_->Context().get(), request, response);
  }

  grpc::Status Load(const v1::LoadModelRequest& request, v1::ModelInfo* info = nullptr) {
    v1::LoadModelResponse response;
    grpc::Status s = stub_->LoadModel(server_->Context("token-2").get(), request, &response);
    if (info != nullptr) *info = response.model();
    return s;
  }

  std::vector<std::string> Loaded() {
    v1::ListModelsResponse response;
    EXPECT_TRUE(stub_->ListModels(server_->Context().get(), {}, &response).ok());
    std::vector<std::string> out;
    for (const v1::ModelInfo& m : response.models()) {
      out.push_back(absl::StrCat(m.name(), ":", m.version()));
    }
    return out;
  }

  std::string model_dir_;
  std::shared_ptr<prometheus::Registry> metrics_registry_;
  std::unique_ptr<PriorMetrics> metrics_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<PriorServiceImpl> service_;
  std::unique_ptr<prl::testing::InProcessServer> server_;
  std::unique_ptr<v1::PriorService::Stub> stub_;
};

TEST_F(PriorServiceTest, ServesHealthAndBuildInfo) {
  EXPECT_TRUE(CheckHealth(server_->channel(), {}).ok());
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("prl_build_info{service=\"prior_server\""));
}

TEST_F(PriorServiceTest, LoadAndUnloadNeedTheToken) {
  v1::LoadModelRequest load;
  load.set_name("skills");
  v1::LoadModelResponse load_response;
  EXPECT_EQ(stub_->LoadModel(server_->Context().get(), load, &load_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::UnloadModelRequest unload;
  v1::UnloadModelResponse unload_response;
  EXPECT_EQ(
      stub_->UnloadModel(server_->Context("nope").get(), unload, &unload_response).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(PriorServiceTest, SkillModelFromTheModelDirectoryAnswersLikeTheModel) {
  std::unique_ptr<models::SkillModel> skill = MakeSkill(1);
  Store(*skill, "skills", 1);
  at::manual_seed(0);
  const at::Tensor z = at::randn({3, kLatent});
  const at::Tensor state = at::randn({3, kObs});

  // Not loaded yet: the call loads it on demand.
  v1::DecodeResponse decoded;
  grpc::Status s = Decode("skills", 0, z, state, &decoded);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(decoded.model().version(), 1);
  const at::Tensor actions = Torch(decoded.actions());
  EXPECT_THAT(std::vector<int64_t>(actions.sizes().begin(), actions.sizes().end()),
              ElementsAre(3, 1, kAct));
  EXPECT_TRUE(at::allclose(actions.view({3, kAct}), skill->Decode(state, z).value(), 1e-6, 1e-6));

  v1::PriorRequest prior_request;
  prior_request.mutable_model()->set_name("skills");
  *prior_request.mutable_state() = Proto(state);
  v1::PriorResponse prior;
  s = stub_->Prior(server_->Context().get(), prior_request, &prior);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const models::DiagonalGaussian want = skill->Prior(state).value();
  EXPECT_TRUE(at::allclose(Torch(prior.mean()), want.mean, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(Torch(prior.log_std()), want.log_std, 1e-6, 1e-6));

  // ListModels: the loaded version, and with include_unloaded also the stored v2.
  Store(*MakeSkill(2), "skills", 2);
  EXPECT_THAT(Loaded(), ElementsAre("skills:1"));
  v1::ListModelsRequest all;
  all.set_include_unloaded(true);
  v1::ListModelsResponse listed;
  ASSERT_TRUE(stub_->ListModels(server_->Context().get(), all, &listed).ok());
  ASSERT_EQ(listed.models_size(), 2);
  EXPECT_TRUE(listed.models(0).loaded());
  EXPECT_EQ(listed.models(0).batching().max_batch_rows(), 256);
  EXPECT_FALSE(listed.models(1).loaded());
  EXPECT_EQ(listed.models(1).kind(), v1::PRIOR_KIND_SKILL_VAE);

  // Metrics: the requests, the batch and the loaded version.
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(
      *metrics,
      HasSubstr("prl_prior_requests_total{code=\"OK\",method=\"Decode\",model=\"skills\"} 1"));
  EXPECT_THAT(*metrics, HasSubstr("prl_prior_loaded_models{model=\"skills\"} 1"));
  EXPECT_THAT(*metrics,
              HasSubstr("prl_prior_batch_rows_count{method=\"Prior\",model=\"skills\"} 1"));
  EXPECT_THAT(*metrics, HasSubstr("prl_prior_compute_seconds_count"));
  EXPECT_THAT(*metrics, HasSubstr("prl_prior_queue_seconds_count"));
}

TEST_F(PriorServiceTest, FlowLoadedFromAPathAndFromPushedBytes) {
  std::unique_ptr<models::RealNvpFlow> flow = MakeFlow(3);
  const std::string path = Store(*flow, "flow", 1);
  v1::LoadModelRequest by_path;
  by_path.set_name("parrot");
  by_path.set_artifact_path(path);
  v1::ModelInfo info;
  grpc::Status s = Load(by_path, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.name(), "parrot");
  EXPECT_EQ(info.version(), 1);
  EXPECT_THAT(info.methods(), ElementsAre("Forward", "Inverse"));

  v1::LoadModelRequest pushed;
  pushed.set_name("parrot");
  pushed.set_artifact(ReadFile(Store(*MakeFlow(4), "flow", 2)));
  pushed.mutable_batching()->set_max_batch_rows(32);
  pushed.mutable_batching()->set_immediate(true);
  s = Load(pushed, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.version(), 2);  // one more than the newest known
  EXPECT_EQ(info.batching().max_batch_rows(), 32);
  EXPECT_TRUE(info.batching().immediate());
  EXPECT_THAT(Loaded(), ElementsAre("parrot:1", "parrot:2"));

  at::manual_seed(5);
  const at::Tensor z = at::randn({4, kAct});
  const at::Tensor state = at::randn({4, kObs});
  v1::ForwardRequest forward;
  forward.mutable_model()->set_name("parrot");
  forward.mutable_model()->set_version(1);
  *forward.mutable_z() = Proto(z);
  *forward.mutable_state() = Proto(state);
  v1::ForwardResponse forwarded;
  s = stub_->Forward(server_->Context().get(), forward, &forwarded);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const models::RealNvpFlow::Result want = flow->Forward(z, state).value();
  EXPECT_TRUE(at::allclose(Torch(forwarded.actions()), want.value, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(Torch(forwarded.log_det()), want.log_det, 1e-5, 1e-5));

  v1::InverseRequest inverse;
  inverse.mutable_model()->set_name("parrot");
  inverse.mutable_model()->set_version(1);
  *inverse.mutable_actions() = forwarded.actions();
  *inverse.mutable_state() = Proto(state);
  v1::InverseResponse inverted;
  s = stub_->Inverse(server_->Context().get(), inverse, &inverted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(at::allclose(Torch(inverted.z()), z, 1e-4, 1e-4));

  // Loading the same artifact again changes nothing; another artifact under a loaded
  // name/version is refused.
  by_path.set_version(1);
  EXPECT_TRUE(Load(by_path).ok());
  pushed.set_version(1);
  s = Load(pushed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("'parrot' v1 is already loaded"));

  // Unload one version, then all.
  v1::UnloadModelRequest unload;
  unload.set_name("parrot");
  unload.set_version(1);
  v1::UnloadModelResponse unloaded;
  ASSERT_TRUE(stub_->UnloadModel(server_->Context("token-2").get(), unload, &unloaded).ok());
  EXPECT_THAT(Loaded(), ElementsAre("parrot:2"));
  unload.set_version(0);
  ASSERT_TRUE(stub_->UnloadModel(server_->Context("token-2").get(), unload, &unloaded).ok());
  EXPECT_TRUE(Loaded().empty());
  grpc::Status again = stub_->UnloadModel(server_->Context("token-2").get(), unload, &unloaded);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(PriorServiceTest, BadInputGetsThePreciseCodeAndChangesNothing) {
  std::unique_ptr<models::SkillModel> skill = MakeSkill(1);
  Store(*skill, "skills", 1);
  const at::Tensor z = at::randn({2, kLatent});
  const at::Tensor state = at::randn({2, kObs});
  v1::DecodeResponse before;
  ASSERT_TRUE(Decode("skills", 1, z, state, &before).ok());

  struct Case {
    std::string what;
    grpc::Status status;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  v1::DecodeResponse r;
  cases.push_back({"unknown model", Decode("nope", 0, z, state, &r), grpc::StatusCode::NOT_FOUND,
                   "model 'nope' is not loaded"});
  cases.push_back({"unknown version", Decode("skills", 7, z, state, &r),
                   grpc::StatusCode::NOT_FOUND, "the model directory has v1"});
  cases.push_back({"bad name", Decode("Bad Name", 0, z, state, &r),
                   grpc::StatusCode::INVALID_ARGUMENT, "model.name: 'Bad Name' is not allowed"});
  cases.push_back({"negative version", Decode("skills", -1, z, state, &r),
                   grpc::StatusCode::INVALID_ARGUMENT, "model.version: -1"});
  cases.push_back({"wrong width", Decode("skills", 1, at::randn({2, kLatent + 1}), state, &r),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "field 'z': shape is [2, 4], must be [*, 3]"});
  cases.push_back({"missing state", Decode("skills", 1, z, at::Tensor(), &r),
                   grpc::StatusCode::INVALID_ARGUMENT, "state: required by model 'skills' v1"});
  cases.push_back({"row mismatch", Decode("skills", 1, z, at::randn({3, kObs}), &r),
                   grpc::StatusCode::INVALID_ARGUMENT, "state: 3 rows, but z has 2"});
  at::Tensor nan_state = state.clone();
  nan_state[1][2] = std::numeric_limits<float>::quiet_NaN();
  cases.push_back(
      {"NaN", Decode("skills", 1, z, nan_state, &r), grpc::StatusCode::INVALID_ARGUMENT, "state"});
  cases.push_back({"over the row limit",
                   Decode("skills", 1, at::randn({1001, kLatent}), at::randn({1001, kObs}), &r),
                   grpc::StatusCode::INVALID_ARGUMENT, "at most 1000 (--max_request_rows)"});
  v1::ForwardRequest forward;
  forward.mutable_model()->set_name("skills");
  *forward.mutable_z() = Proto(at::randn({2, kAct}));
  *forward.mutable_state() = Proto(state);
  v1::ForwardResponse fr;
  cases.push_back({"method not answered", stub_->Forward(server_->Context().get(), forward, &fr),
                   grpc::StatusCode::FAILED_PRECONDITION,
                   "does not answer Forward; it answers: Decode, Prior"});
  v1::LoadModelRequest corrupt;
  corrupt.set_name("skills");
  corrupt.set_version(5);
  corrupt.set_artifact("PRLFILE garbage that is no artifact");
  cases.push_back({"corrupt push", Load(corrupt), grpc::StatusCode::DATA_LOSS, "corrupt"});
  v1::LoadModelRequest both;
  both.set_name("skills");
  both.set_artifact("x");
  both.set_artifact_path("/x");
  cases.push_back({"path and bytes", Load(both), grpc::StatusCode::INVALID_ARGUMENT,
                   "artifact_path and artifact are both set"});
  v1::LoadModelRequest bad_batching;
  bad_batching.set_name("skills");
  bad_batching.mutable_batching()->set_instances(100);
  cases.push_back({"bad batching", Load(bad_batching), grpc::StatusCode::INVALID_ARGUMENT,
                   "batching.instances: 100 is not allowed"});
  v1::LoadModelRequest missing;
  missing.set_name("skills");
  missing.set_version(9);
  cases.push_back({"missing version", Load(missing), grpc::StatusCode::NOT_FOUND,
                   "is not in the model directory"});

  for (const Case& c : cases) {
    EXPECT_EQ(c.status.error_code(), c.code) << c.what << ": " << c.status.error_message();
    EXPECT_THAT(c.status.error_message(), HasSubstr(c.message)) << c.what;
  }
  // Nothing loaded changed: the same version answers the same.
  EXPECT_THAT(Loaded(), ElementsAre("skills:1"));
  v1::DecodeResponse after;
  ASSERT_TRUE(Decode("skills", 0, z, state, &after).ok());
  EXPECT_EQ(after.actions().data(), before.actions().data());
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(*metrics, HasSubstr("prl_prior_requests_total{code=\"NOT_FOUND\",method=\"Decode\","
                                  "model=\"(unknown)\"} 2"));
}

TEST_F(PriorServiceTest, ConcurrentCallsAreBatchedAndEachGetsItsOwnRows) {
  RegistryOptions options;
  options.batching.max_queue_delay = absl::Milliseconds(50);
  options.batching.max_batch_rows = 16;
  Start(options);
  std::unique_ptr<models::SkillModel> skill = MakeSkill(1);
  Store(*skill, "skills", 1);
  v1::DecodeResponse warm;
  ASSERT_TRUE(Decode("skills", 1, at::zeros({1, kLatent}), at::zeros({1, kObs}), &warm).ok());

  constexpr int kClients = 16;
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      const at::Tensor z = at::full({1, kLatent}, 0.1 * i);
      const at::Tensor state = at::full({1, kObs}, -0.05 * i);
      v1::DecodeResponse response;
      grpc::Status s = Decode("skills", 1, z, state, &response);
      if (!s.ok() || !at::allclose(Torch(response.actions()).view({1, kAct}),
                                   skill->Decode(state, z).value(), 1e-5, 1e-5)) {
        ++wrong;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = registry_->Get("skills", 1, "");
  ASSERT_TRUE(model.ok());
  const DynamicBatcher::Stats stats = (*model)->batcher(models::PriorMethod::kDecode)->stats();
  EXPECT_EQ(stats.calls, kClients + 1);
  EXPECT_GT(stats.max_batch_calls, 1) << "no two calls were coalesced";
  EXPECT_LT(stats.batches, kClients + 1);
  auto metrics = server_->Metrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(*metrics,
              HasSubstr("prl_prior_batch_calls_bucket{method=\"Decode\",model=\"skills\""));
}

TEST_F(PriorServiceTest, DeadlinesHoldWhileQueued) {
  std::unique_ptr<models::SkillModel> skill = MakeSkill(1);
  v1::LoadModelRequest load;
  load.set_name("skills");
  load.set_artifact_path(Store(*skill, "skills", 1));
  load.set_version(1);
  load.mutable_batching()->set_max_queue_delay_us(1'000'000);  // a lone call waits 1 s
  ASSERT_TRUE(Load(load).ok());
  v1::DecodeRequest request;
  request.mutable_model()->set_name("skills");
  *request.mutable_z() = Proto(at::zeros({1, kLatent}));
  *request.mutable_state() = Proto(at::zeros({1, kObs}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  v1::DecodeResponse response;
  grpc::Status s = stub_->Decode(&context, request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = registry_->Get("skills", 1, "");
  ASSERT_TRUE(model.ok());
  // The server side leaves the queue too (within its polling interval), and the rows never run.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while ((*model)->batcher(models::PriorMethod::kDecode)->stats().expired == 0) {
    ASSERT_LT(absl::Now(), give_up) << "the expired call stayed queued";
    std::this_thread::yield();
  }
  EXPECT_EQ((*model)->batcher(models::PriorMethod::kDecode)->stats().calls, 0);
}

TEST_F(PriorServiceTest, HotSwapUnderLoadDropsNoCall) {
  RegistryOptions options;
  options.keep_versions = 1;
  Start(options);
  const std::string v1_path = Store(*MakeSkill(1), "skills", 1);
  const std::string v2_path = Store(*MakeSkill(2), "skills", 2);
  const std::string v3_path = Store(*MakeSkill(3), "skills", 3);
  v1::LoadModelRequest load;
  load.set_name("skills");
  load.set_version(1);
  ASSERT_TRUE(Load(load).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> calls{0};
  std::vector<std::map<int64_t, int>> seen(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      while (!stop.load()) {
        v1::DecodeResponse response;
        grpc::Status s =
            Decode("skills", 0, at::randn({3, kLatent}), at::randn({3, kObs}), &response);
        ++calls;
        if (!s.ok()) {
          ++failures;
          ADD_FAILURE() << s.error_message();
        } else {
          ++seen[i][response.model().version()];
        }
      }
    });
  }
  auto await_calls = [&](int n) {
    const int target = calls.load() + n;
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (calls.load() < target && absl::Now() < give_up) std::this_thread::yield();
  };
  await_calls(50);
  load.set_version(2);
  ASSERT_TRUE(Load(load).ok());
  await_calls(50);
  load.set_version(3);
  ASSERT_TRUE(Load(load).ok());
  await_calls(50);
  stop = true;
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_THAT(Loaded(), ElementsAre("skills:3"));  // latest 1 kept
  int on_v3 = 0;
  for (const auto& per_client : seen) on_v3 += per_client.count(3) ? per_client.at(3) : 0;
  EXPECT_GT(on_v3, 0);
}

TEST_F(PriorServiceTest, RemotePriorAnswersLikeTheInProcessModel) {
  const std::string path = Store(*MakeSkill(1), "skills", 1);
  Store(*MakeSkill(2), "skills", 2);
  v1::PriorRef ref;
  ref.set_name("skills");
  absl::StatusOr<std::unique_ptr<RemotePrior>> remote =
      RemotePrior::Connect(server_->channel(), ref);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ((*remote)->info().version(), 2);  // the newest the server can load, then fixed
  ref.set_version(1);
  remote = RemotePrior::Connect(server_->channel(), ref);
  ASSERT_TRUE(remote.ok()) << remote.status();
  models::PriorLoadOptions load;
  absl::StatusOr<std::unique_ptr<models::PriorInference>> local = models::LoadPriorFile(path, load);
  ASSERT_TRUE(local.ok()) << local.status();

  at::manual_seed(3);
  std::vector<HostTensor> inputs;
  for (const auto& [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{5, kLatent}, {5, kObs}}) {
    at::Tensor t = at::randn({rows, cols});
    inputs.push_back(
        HostTensor::FromFloats({rows, cols}, absl::MakeConstSpan(t.data_ptr<float>(), t.numel())));
  }
  for (models::PriorMethod method : {models::PriorMethod::kDecode, models::PriorMethod::kPrior}) {
    std::vector<HostTensor> in = inputs;
    if (method == models::PriorMethod::kPrior) in = {inputs[1]};
    absl::StatusOr<std::vector<HostTensor>> served = (*remote)->Run(method, in);
    absl::StatusOr<std::vector<HostTensor>> direct = (*local)->Run(method, in);
    ASSERT_TRUE(served.ok()) << served.status();
    ASSERT_TRUE(direct.ok()) << direct.status();
    ASSERT_EQ(served->size(), direct->size());
    for (size_t i = 0; i < served->size(); ++i) {
      EXPECT_EQ((*served)[i].shape(), (*direct)[i].shape());
      EXPECT_EQ((*served)[i].bytes(), (*direct)[i].bytes()) << "same LibTorch, same bits";
    }
  }
  // Bad input fails before a round trip, with the same message the server would give.
  absl::Status s = (*remote)->Run(models::PriorMethod::kForward, inputs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  ref.set_name("absent");
  ref.set_version(0);
  s = RemotePrior::Connect(server_->channel(), ref).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("no model 'absent'"));
}

// ---- MCAT's action translator ----

constexpr int kContext = 3;

// A translator artifact from a freshly initialised MCAT model (H's weights are what matter).
models::ModelArtifact TranslatorArtifact(const std::string& name, int64_t version) {
  models::McatModelOptions options;
  options.dims.obs_dim = kObs;
  options.dims.action_dim = kAct;
  options.dims.context_dim = kContext;
  options.dims.context_history = 2;
  options.prediction_horizon = 2;
  options.num_tasks = 2;
  options.network.add_hidden_sizes(16);
  options.seed = 5;
  std::unique_ptr<models::McatModel> model = models::McatModel::Create(options).value();
  v1::ModelInfo info;
  info.set_name(name);
  info.set_version(version);
  return model->TranslatorArtifact(info).value();
}

v1::TranslateRequest TranslateCall(const std::string& name, const at::Tensor& state,
                                   const at::Tensor& action, const at::Tensor& source,
                                   const at::Tensor& target) {
  v1::TranslateRequest request;
  request.mutable_model()->set_name(name);
  *request.mutable_state() = Proto(state);
  *request.mutable_source_action() = Proto(action);
  *request.mutable_source_context() = Proto(source);
  *request.mutable_target_context() = Proto(target);
  return request;
}

TEST_F(PriorServiceTest, TranslatorArtifactAnswersTranslateLikeTheModel) {
  const models::ModelArtifact artifact = TranslatorArtifact("translator", 1);
  MakeDirs(model_dir_ + "/translator");
  ASSERT_TRUE(models::WriteModelArtifact(model_dir_ + "/translator/v1.prl", artifact).ok());
  v1::LoadModelRequest load;
  load.set_name("translator");
  v1::ModelInfo info;
  grpc::Status s = Load(load, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.kind(), v1::PRIOR_KIND_ACTION_TRANSLATOR);
  EXPECT_EQ(info.context_dim(), kContext);
  EXPECT_THAT(info.methods(), ElementsAre("Translate"));

  at::manual_seed(6);
  const at::Tensor state = at::randn({5, kObs});
  const at::Tensor action = at::rand({5, kAct}) * 2 - 1;
  const at::Tensor source = at::randn({5, kContext});
  const at::Tensor target = at::randn({5, kContext});
  v1::TranslateResponse response;
  s = stub_->Translate(server_->Context().get(),
                       TranslateCall("translator", state, action, source, target), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.model().version(), 1);
  std::unique_ptr<models::TranslatorModel> model =
      models::TranslatorModel::FromArtifact(artifact, "cpu").value();
  const at::Tensor want = model->Translate(state, action, source, target);
  const at::Tensor got = Torch(response.target_action());
  EXPECT_EQ(got.sizes().vec(), (std::vector<int64_t>{5, kAct}));
  EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6));
}

// The translator between one pair of tasks (TRAIN_PRIOR, PRIOR_KIND_ACTION_TRANSLATOR) takes
// no contexts: Translate answers from states and source actions, and refuses contexts.
TEST_F(PriorServiceTest, TaskPairTranslatorAnswersTranslateWithoutContexts) {
  models::TaskPairTranslatorOptions options;
  options.obs_dim = kObs;
  options.act_dim = kAct;
  options.network.add_hidden_sizes(16);
  options.seed = 9;
  std::unique_ptr<models::TaskPairTranslator> pair =
      models::TaskPairTranslator::Create(options).value();
  v1::ModelInfo stored;
  stored.set_name("pair");
  stored.set_version(1);
  MakeDirs(model_dir_ + "/pair");
  ASSERT_TRUE(
      models::WriteModelArtifact(model_dir_ + "/pair/v1.prl", pair->ToArtifact(stored).value())
          .ok());
  v1::LoadModelRequest load;
  load.set_name("pair");
  v1::ModelInfo info;
  grpc::Status s = Load(load, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.context_dim(), 0);

  at::manual_seed(7);
  const at::Tensor state = at::randn({4, kObs});
  const at::Tensor action = at::rand({4, kAct}) * 2 - 1;
  v1::TranslateRequest request;
  request.mutable_model()->set_name("pair");
  *request.mutable_state() = Proto(state);
  *request.mutable_source_action() = Proto(action);
  v1::TranslateResponse response;
  s = stub_->Translate(server_->Context().get(), request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(
      at::allclose(Torch(response.target_action()), pair->Translate(state, action), 1e-6, 1e-6));

  *request.mutable_source_context() = Proto(at::zeros({4, 1}));
  s = stub_->Translate(server_->Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("source_context: must be absent"));
}

TEST_F(PriorServiceTest, TranslateRefusesBadInputAndUnknownModels) {
  MakeDirs(model_dir_ + "/translator");
  ASSERT_TRUE(models::WriteModelArtifact(model_dir_ + "/translator/v1.prl",
                                         TranslatorArtifact("translator", 1))
                  .ok());
  const at::Tensor state = at::randn({2, kObs});
  const at::Tensor action = at::zeros({2, kAct});
  const at::Tensor context = at::randn({2, kContext});
  v1::TranslateResponse r;
  auto call = [&](const v1::TranslateRequest& request) {
    return stub_->Translate(server_->Context().get(), request, &r);
  };
  ASSERT_TRUE(call(TranslateCall("translator", state, action, context, context)).ok());

  grpc::Status s =
      call(TranslateCall("translator", state, action, at::randn({2, kContext + 1}), context));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("source_context"));
  EXPECT_THAT(s.error_message(), HasSubstr("must be [*, 3]"));

  at::Tensor nan_target = context.clone();
  nan_target[1][0] = std::numeric_limits<float>::quiet_NaN();
  s = call(TranslateCall("translator", state, action, context, nan_target));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("target_context"));

  v1::TranslateRequest no_context = TranslateCall("translator", state, action, context, context);
  no_context.clear_target_context();
  s = call(no_context);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("target_context: required"));

  s = call(TranslateCall("absent", state, action, context, context));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("absent"));

  // a translator does not decode
  v1::DecodeResponse decoded;
  s = Decode("translator", 1, at::randn({2, 1}), state, &decoded);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("it answers: Translate"));
}

// ---- TorchScript import ----

// reference.txt: one tensor per line, "<name> <rank> <dims...> <values...>".
std::map<std::string, at::Tensor> ReadReference(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int rank = 0;
    EXPECT_TRUE(absl::SimpleAtoi(f[1], &rank)) << line;
    std::vector<int64_t> shape;
    for (int i = 0; i < rank; ++i) {
      int64_t d = 0;
      EXPECT_TRUE(absl::SimpleAtoi(f[2 + i], &d));
      shape.push_back(d);
    }
    std::vector<float> values;
    for (size_t i = 2 + rank; i < f.size(); ++i) {
      float v = 0;
      EXPECT_TRUE(absl::SimpleAtof(f[i], &v)) << f[i];
      values.push_back(v);
    }
    out[f[0]] = at::tensor(values).view(shape);
  }
  return out;
}

// Serves `module` (a .pt file) and checks every method against `reference`.
void ExpectServedLikePyTorch(PriorServiceTest* test, v1::PriorService::Stub* stub,
                             prl::testing::InProcessServer* server, const std::string& module,
                             const std::string& reference) {
  std::map<std::string, at::Tensor> ref = ReadReference(reference);
  ASSERT_FALSE(ref.empty()) << "no reference tensors in " << reference;
  v1::LoadModelRequest load;
  load.set_name("imported");
  load.set_artifact_path(module);
  v1::LoadModelResponse loaded;
  grpc::Status s = stub->LoadModel(server->Context("token-2").get(), load, &loaded);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(loaded.model().kind(), v1::PRIOR_KIND_TORCHSCRIPT);
  EXPECT_THAT(loaded.model().methods(), ElementsAre("Decode", "Prior", "Forward", "Inverse"));
  const int64_t version = loaded.model().version();
  constexpr double kTol = 1e-5;

  v1::DecodeRequest decode;
  decode.mutable_model()->set_name("imported");
  decode.mutable_model()->set_version(version);
  *decode.mutable_z() = Proto(ref.at("decode.z"));
  *decode.mutable_state() = Proto(ref.at("decode.state"));
  v1::DecodeResponse decoded;
  s = stub->Decode(server->Context().get(), decode, &decoded);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(at::allclose(Torch(decoded.actions()), ref.at("decode.actions"), kTol, kTol));

  v1::PriorRequest prior;
  prior.mutable_model()->set_name("imported");
  prior.mutable_model()->set_version(version);
  *prior.mutable_state() = Proto(ref.at("prior.state"));
  v1::PriorResponse priored;
  s = stub->Prior(server->Context().get(), prior, &priored);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(at::allclose(Torch(priored.mean()), ref.at("prior.mean"), kTol, kTol));
  EXPECT_TRUE(at::allclose(Torch(priored.log_std()), ref.at("prior.log_std"), kTol, kTol));

  v1::ForwardRequest forward;
  forward.mutable_model()->set_name("imported");
  forward.mutable_model()->set_version(version);
  *forward.mutable_z() = Proto(ref.at("flow_forward.z"));
  *forward.mutable_state() = Proto(ref.at("flow_forward.state"));
  v1::ForwardResponse forwarded;
  s = stub->Forward(server->Context().get(), forward, &forwarded);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(at::allclose(Torch(forwarded.actions()), ref.at("flow_forward.actions"), kTol, kTol));
  EXPECT_TRUE(at::allclose(Torch(forwarded.log_det()), ref.at("flow_forward.log_det"), kTol, kTol));

  v1::InverseRequest inverse;
  inverse.mutable_model()->set_name("imported");
  inverse.mutable_model()->set_version(version);
  *inverse.mutable_actions() = Proto(ref.at("flow_inverse.actions"));
  *inverse.mutable_state() = Proto(ref.at("flow_inverse.state"));
  v1::InverseResponse inverted;
  s = stub->Inverse(server->Context().get(), inverse, &inverted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(at::allclose(Torch(inverted.z()), ref.at("flow_inverse.z"), kTol, kTol));
  EXPECT_TRUE(at::allclose(Torch(inverted.log_det()), ref.at("flow_inverse.log_det"), kTol, kTol));

  // Wrong dimensions are refused against the module's attributes.
  *decode.mutable_z() = Proto(at::zeros({1, 1}));
  *decode.mutable_state() = Proto(at::zeros({1, ref.at("decode.state").size(1)}));
  s = stub->Decode(server->Context().get(), decode, &decoded);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("field 'z': shape is [1, 1]"));
}

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/", std::getenv("TEST_WORKSPACE"), "/", path);
}

TEST_F(PriorServiceTest, ServesAModuleExportedByPyTorch2LikePyTorch) {
  ExpectServedLikePyTorch(this, stub_.get(), server_.get(),
                          Runfile("tests/data/torchscript_prior_torch2/prior.pt"),
                          Runfile("tests/data/torchscript_prior_torch2/reference.txt"));
}

TEST_F(PriorServiceTest, ServesAModuleTrainedAndExportedByTheInstalledPyTorch) {
  // Debian's python3-torch (scripts/setup.sh installs it; /usr/bin/python3 is Debian's
  // interpreter) trains and exports a tiny prior now.
  const std::string out = ::testing::TempDir() + "/exported";
  const std::string command =
      absl::StrCat("/usr/bin/python3 ", Runfile("examples/torchscript_prior/export_prior.py"),
                   " --out_dir ", out, " --steps 50 > ", out, ".log 2>&1");
  const int rc = std::system(command.c_str());
  ASSERT_EQ(rc, 0) << "export failed: " << ReadFile(out + ".log");
  ExpectServedLikePyTorch(this, stub_.get(), server_.get(), out + "/prior.pt",
                          out + "/reference.txt");
}

}  // namespace
}  // namespace prl::prior_server
