// prior_server_bench: the prior server over gRPC against the same model called in-process, from
// an actor's point of view (each client is a thread that calls Decode back to back, as an actor
// decoding one latent per env per decision would).
//
// In one run, for every batch size (rows per call) and client count:
//   inproc   models::LoadPriorFile's PriorInference, called directly from the client threads;
//   grpc     prl_prior_server's service on loopback (real gRPC, real batcher), each client with
//            its own channel, through RemotePrior (the actors' client);
// and the gain of dynamic batching for 16 batch-1 clients: the same server and model loaded a
// second time with batching off (max_batch_rows 1). Prints requests/s, rows/s, p50 and p99
// latency, and the ratios against the targets:
//   grpc / inproc rows/s at batch 64 with 8 clients   >= 0.60
//   batched / unbatched rows/s, 16 batch-1 clients    >= 3
// Client and server share the machine's cores; --threads sets LibTorch's intra-op threads for
// both paths (1 by default, so neither gets more compute than the other).
//
//   bazel run -c opt //bench:prior_server_bench -- [--model=skill:1024x3 | --model=prior.pt]
//       [--json=out.json]
// bench/prior_server.sh exports the model, runs this and the Ray Serve peer, and compares.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "models/artifact.h"
#include "models/skill_model.h"
#include "models/torch_prior_inference.h"
#include "prior_server/model_registry.h"
#include "prior_server/prior_client.h"
#include "prior_server/prior_metrics.h"
#include "prior_server/prior_service.h"

ABSL_FLAG(std::string, model, "skill",
          "The model to serve: a TorchScript .pt, a PRL artifact, or skill[:<width>x<layers>] "
          "for a freshly initialised SPiRL skill model with the point-maze shapes (state 4, "
          "action 2, latent 10, H 10) and hidden layers of that shape (default 128x5, SPiRL's).");
ABSL_FLAG(std::string, batch_sizes, "1,16,64", "Rows per call, comma-separated.");
ABSL_FLAG(std::string, clients, "1,8,32", "Client threads, comma-separated.");
ABSL_FLAG(double, seconds, 3.0, "Measured time per case (after 0.5 s of warm-up).");
ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads (both paths).");
ABSL_FLAG(int64_t, max_batch_rows, 256, "The server's rows per batch.");
ABSL_FLAG(int64_t, max_queue_delay_us, 200, "The server's queue delay, in microseconds.");
ABSL_FLAG(int, instances, 2, "The server's batches computing at once per model and method.");
ABSL_FLAG(int, batching_clients, 16, "Batch-1 clients of the dynamic-batching comparison.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");

namespace {

using prl::HostTensor;
using prl::models::PriorInference;
using prl::models::PriorMethod;

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      std::cerr << "not a positive integer list: " << s << "\n";
      std::exit(2);
    }
    out.push_back(v);
  }
  return out;
}

std::vector<HostTensor> Inputs(const prl::v1::ModelInfo& info, int rows, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<HostTensor> inputs;
  for (const prl::models::PriorInputSpec& spec :
       prl::models::PriorInputSpecs(info, PriorMethod::kDecode)) {
    std::vector<float> v(static_cast<size_t>(rows) * spec.width);
    for (float& x : v) x = normal(rng);
    inputs.push_back(HostTensor::FromFloats({rows, spec.width}, v));
  }
  return inputs;
}

// The floor of any call's cost: a PriorInference whose Run is one ListModels RPC for a name
// nothing is loaded under (no model, no batcher, a tiny reply), on its own channel.
class EmptyCall final : public PriorInference {
 public:
  EmptyCall(std::shared_ptr<grpc::Channel> channel, prl::v1::ModelInfo info)
      : stub_(prl::v1::PriorService::NewStub(channel)), info_(std::move(info)) {}
  const prl::v1::ModelInfo& info() const override { return info_; }
  absl::StatusOr<std::vector<HostTensor>> Run(PriorMethod,
                                              const std::vector<HostTensor>&) const override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    prl::v1::ListModelsRequest request;
    request.set_name("nothing-here");
    prl::v1::ListModelsResponse response;
    grpc::Status s = stub_->ListModels(&context, request, &response);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
    return std::vector<HostTensor>{};
  }

 private:
  std::unique_ptr<prl::v1::PriorService::Stub> stub_;
  prl::v1::ModelInfo info_;
};

struct Result {
  std::string path;
  int batch = 0;
  int clients = 0;
  double requests_per_s = 0;
  double rows_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t errors = 0;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

// `clients` threads call `models[i % models.size()]` back to back for the warm-up, then for
// `seconds`, timing the measured calls.
Result Measure(const std::string& path, const std::vector<const PriorInference*>& models, int batch,
               int clients, double seconds) {
  std::atomic<int> phase{0};  // 0 warm-up, 1 measuring, 2 stop
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      const PriorInference* model = models[c % models.size()];
      const std::vector<HostTensor> inputs = Inputs(model->info(), batch, c);
      while (phase.load(std::memory_order_relaxed) < 2) {
        const absl::Time start = absl::Now();
        absl::StatusOr<std::vector<HostTensor>> out = model->Run(PriorMethod::kDecode, inputs);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
        if (!out.ok()) {
          if (errors.fetch_add(1) == 0) std::cerr << path << ": " << out.status() << "\n";
        } else if (phase.load(std::memory_order_relaxed) == 1) {
          latencies[c].push_back(ms);
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  phase = 1;
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(seconds));
  phase = 2;
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  for (std::thread& t : threads) t.join();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Result r;
  r.path = path;
  r.batch = batch;
  r.clients = clients;
  r.requests_per_s = all.size() / elapsed;
  r.rows_per_s = r.requests_per_s * batch;
  r.p50_ms = Percentile(all, 0.50);
  r.p99_ms = Percentile(all, 0.99);
  r.errors = errors.load();
  return r;
}

void Print(const Result& r) {
  std::cout << absl::StrFormat(
      "%-16s batch %3d  clients %3d  %10.0f req/s  %11.0f rows/s  "
      "p50 %7.3f ms  p99 %7.3f ms%s\n",
      r.path, r.batch, r.clients, r.requests_per_s, r.rows_per_s, r.p50_ms, r.p99_ms,
      r.errors ? absl::StrCat("  ERRORS ", r.errors) : "");
  std::cout.flush();
}

// Writes a SPiRL skill model of the shape `spec` names ("skill" or "skill:<width>x<layers>") to
// a temporary artifact; returns its path.
absl::StatusOr<std::string> MakeSkillArtifact(const std::string& spec) {
  int width = prl::models::kSkillDefaultHiddenSize;
  int layers = prl::models::kSkillDefaultHiddenLayers;
  absl::string_view shape = spec;
  if (absl::ConsumePrefix(&shape, "skill:")) {
    std::vector<std::string> parts = absl::StrSplit(shape, 'x');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &width) ||
        !absl::SimpleAtoi(parts[1], &layers)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--model: '", spec, "' is not skill:<width>x<layers>"));
    }
  } else if (shape != "skill") {
    return absl::InvalidArgumentError(absl::StrCat("--model: '", spec, "' is not a skill spec"));
  }
  prl::models::SkillModelOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  for (int i = 0; i < layers; ++i) options.network.add_hidden_sizes(width);
  PRL_ASSIGN_OR_RETURN(auto model, prl::models::SkillModel::Create(options));
  prl::v1::ModelInfo info;
  info.set_name("bench");
  info.set_version(1);
  PRL_ASSIGN_OR_RETURN(prl::models::ModelArtifact artifact, model->ToArtifact(info));
  const char* tmp = std::getenv("TMPDIR");
  const std::string path =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/prl-bench-skill-", width, "x", layers, ".prl");
  PRL_RETURN_IF_ERROR(prl::models::WriteModelArtifact(path, artifact));
  return path;
}

int Fail(const absl::Status& s) {
  std::cerr << "prior_server_bench: " << s << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string model_path = absl::GetFlag(FLAGS_model);
  if (absl::StartsWith(model_path, "skill")) {
    auto path = MakeSkillArtifact(model_path);
    if (!path.ok()) return Fail(path.status());
    model_path = *path;
  }
  const double seconds = absl::GetFlag(FLAGS_seconds);
  prl::models::SetInferenceThreads(absl::GetFlag(FLAGS_threads));

  prl::models::PriorLoadOptions load;
  load.name = "bench";
  load.version = 1;
  load.device = "cpu";
  auto local = prl::models::LoadPriorFile(model_path, load);
  if (!local.ok()) return Fail(local.status());

  // The server, in this process, on loopback.
  auto metrics_registry = std::make_shared<prometheus::Registry>();
  prl::prior_server::PriorMetrics metrics(*metrics_registry);
  prl::prior_server::RegistryOptions registry_options;
  registry_options.batching.max_batch_rows = absl::GetFlag(FLAGS_max_batch_rows);
  registry_options.batching.max_queue_delay =
      absl::Microseconds(absl::GetFlag(FLAGS_max_queue_delay_us));
  registry_options.batching.instances = absl::GetFlag(FLAGS_instances);
  registry_options.batching.max_queue_rows =
      std::max<int64_t>(16384, registry_options.batching.max_batch_rows);
  prl::prior_server::ModelRegistry registry(
      registry_options,
      [](absl::string_view bytes, absl::string_view source, const std::string& name,
         int64_t version) {
        prl::models::PriorLoadOptions options;
        options.device = "cpu";
        options.name = name;
        options.version = version;
        return prl::models::LoadPrior(bytes, source, options);
      },
      &metrics);
  for (const char* name : {"bench", "bench-unbatched"}) {
    prl::v1::LoadModelRequest request;
    request.set_name(name);
    request.set_version(1);
    request.set_artifact_path(model_path);
    if (std::string(name) == "bench-unbatched") {
      request.mutable_batching()->set_max_batch_rows(1);
      request.mutable_batching()->set_immediate(true);
    }
    auto info = registry.Load(request);
    if (!info.ok()) return Fail(info.status());
  }
  prl::prior_server::PriorServiceImpl service({}, &registry, &metrics);
  prl::ServerOptions server_options;
  server_options.service_name = "prior_server";
  server_options.host = "127.0.0.1";
  server_options.port = 0;
  server_options.metrics_port = -1;
  auto host = prl::ServerHost::Start(server_options, {&service}, metrics_registry);
  if (!host.ok()) return Fail(host.status());
  const std::string address = absl::StrCat("127.0.0.1:", (*host)->port());

  const std::vector<int> batch_sizes = ParseList(absl::GetFlag(FLAGS_batch_sizes));
  const std::vector<int> client_counts = ParseList(absl::GetFlag(FLAGS_clients));
  int max_clients = absl::GetFlag(FLAGS_batching_clients);
  for (int c : client_counts) max_clients = std::max(max_clients, c);
  // One channel per client, as separate actors would have (a channel argument keeps gRPC from
  // sharing one connection between them).
  auto connect = [&](const std::string& name, int count) {
    std::vector<std::unique_ptr<prl::prior_server::RemotePrior>> out;
    for (int i = 0; i < count; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("prl.bench_client", i);
      auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      prl::v1::PriorRef ref;
      ref.set_name(name);
      ref.set_version(1);
      auto remote = prl::prior_server::RemotePrior::Connect(channel, ref);
      if (!remote.ok()) {
        std::cerr << "prior_server_bench: " << remote.status() << "\n";
        std::exit(1);
      }
      out.push_back(*std::move(remote));
    }
    return out;
  };
  auto batched = connect("bench", max_clients);
  auto unbatched = connect("bench-unbatched", absl::GetFlag(FLAGS_batching_clients));
  auto pointers = [](const auto& remotes, int n) {
    std::vector<const PriorInference*> out;
    for (int i = 0; i < n; ++i) out.push_back(remotes[i].get());
    return out;
  };

  const prl::v1::ModelInfo& info = (*local)->info();
  std::cout << "model " << model_path << ": obs_dim " << info.obs_dim() << ", latent_dim "
            << info.latent_dim() << ", horizon " << info.horizon() << ", action_dim "
            << info.action_dim() << "; Decode; server batching "
            << registry_options.batching.max_batch_rows << " rows / "
            << absl::GetFlag(FLAGS_max_queue_delay_us) << " us; " << absl::GetFlag(FLAGS_threads)
            << " intra-op thread(s); " << seconds << " s per case\n";
  std::vector<Result> results;
  for (int batch : batch_sizes) {
    for (int clients : client_counts) {
      results.push_back(Measure("inproc", {local->get()}, batch, clients, seconds));
      Print(results.back());
      results.push_back(Measure("grpc", pointers(batched, clients), batch, clients, seconds));
      Print(results.back());
    }
  }
  const int bc = absl::GetFlag(FLAGS_batching_clients);
  {
    std::vector<std::unique_ptr<EmptyCall>> empty;
    std::vector<const PriorInference*> empty_ptrs;
    for (int i = 0; i < bc; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("prl.bench_client", 1000 + i);
      empty.push_back(std::make_unique<EmptyCall>(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args), info));
      empty_ptrs.push_back(empty.back().get());
    }
    Result floor = Measure("grpc-empty-rpc", empty_ptrs, 1, bc, seconds);
    Print(floor);
    results.push_back(floor);
  }
  auto decode_stats = [&registry](const std::string& name) {
    auto model = registry.Get(name, 1, "");
    return (*model)->batcher(PriorMethod::kDecode)->stats();
  };
  const prl::prior_server::DynamicBatcher::Stats before = decode_stats("bench");
  const Result on = Measure("grpc", pointers(batched, bc), 1, bc, seconds);
  const prl::prior_server::DynamicBatcher::Stats after = decode_stats("bench");
  Print(on);
  std::cout << absl::StrFormat("  (batched: %.1f rows per batch on average, at most %d calls)\n",
                               static_cast<double>(after.rows - before.rows) /
                                   std::max<int64_t>(1, after.batches - before.batches),
                               after.max_batch_calls);
  Result off = Measure("grpc-unbatched", pointers(unbatched, bc), 1, bc, seconds);
  Print(off);
  results.push_back(off);
  results.push_back(on);

  auto find = [&](const std::string& path, int batch, int clients) -> const Result* {
    for (const Result& r : results) {
      if (r.path == path && r.batch == batch && r.clients == clients) return &r;
    }
    return nullptr;
  };
  const Result* in64 = find("inproc", 64, 8);
  const Result* grpc64 = find("grpc", 64, 8);
  std::cout << "\n";
  if (in64 != nullptr && grpc64 != nullptr) {
    std::cout << absl::StrFormat(
        "ratio grpc/inproc rows/s at batch 64, 8 clients: %.2f (target >= 0.60) %s\n",
        grpc64->rows_per_s / in64->rows_per_s,
        grpc64->rows_per_s / in64->rows_per_s >= 0.6 ? "MET" : "MISSED");
  }
  const double gain = on.rows_per_s / std::max(off.rows_per_s, 1e-9);
  std::cout << absl::StrFormat(
      "ratio dynamic batching on/off rows/s, %d batch-1 clients: %.2f (target >= 3) %s\n", bc, gain,
      gain >= 3 ? "MET" : "MISSED");

  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "[\n";
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      out << absl::StrFormat(
          "  {\"peer\": \"prl_%s\", \"batch\": %d, \"clients\": %d, \"requests_per_s\": %.1f, "
          "\"rows_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"errors\": %d}%s\n",
          r.path, r.batch, r.clients, r.requests_per_s, r.rows_per_s, r.p50_ms, r.p99_ms, r.errors,
          i + 1 < results.size() ? "," : "");
    }
    out << "]\n";
  }
  (*host)->Shutdown();
  return 0;
}
