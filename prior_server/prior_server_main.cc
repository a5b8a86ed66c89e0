// prl_prior_server: serves frozen prior models (prl.v1.PriorService) with dynamic batching,
// gRPC health and /metrics; stops cleanly on SIGTERM/SIGINT.
//
// Models come from --prior_model_dir (the learner's model store layout, loaded on demand or
// preloaded with --prior_load) and from LoadModel (a path the server can read, or the artifact's
// bytes pushed by the caller). See docs/prior_server.md.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/allocator.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "common/temp_files.h"
#include "models/cpu_allocator.h"
#include "models/torch_prior_inference.h"
#include "prior_server/dynamic_batcher.h"
#include "prior_server/model_registry.h"
#include "prior_server/prior_metrics.h"
#include "prior_server/prior_service.h"

ABSL_FLAG(std::string, prior_model_dir, "",
          "Directory of model artifacts laid out as <dir>/<name>/v<version>.prl (the learner's "
          "model store, <learner state>/models, on a shared file system). Empty: none.");
ABSL_FLAG(std::vector<std::string>, prior_load, {},
          "Models to load at start from --prior_model_dir, as name or name:version (0 or "
          "absent: the newest), comma-separated.");
ABSL_FLAG(bool, prior_load_on_demand, true,
          "Load a version a call names from --prior_model_dir when it is not loaded.");
ABSL_FLAG(int, prior_keep_versions, 0,
          "Versions of one model name kept loaded (latest N); 0 keeps every version.");
ABSL_FLAG(int64_t, prior_max_batch_rows, 256, "Default rows one batch may hold.");
ABSL_FLAG(int64_t, prior_max_queue_delay_us, 200,
          "Default time in microseconds the oldest queued call waits for others to join its "
          "batch (0: dispatch at once).");
ABSL_FLAG(int64_t, prior_max_queue_rows, 16384,
          "Default rows that may wait per model and method; calls beyond get "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, prior_batch_instances, 0,
          "Default batches of one model and method computing at once (0: one per core, up to "
          "64; with --prior_threads=1 that keeps every core busy under load).");
ABSL_FLAG(int64_t, prior_max_request_rows, 65536, "Rows one inference call may carry.");
ABSL_FLAG(int64_t, prior_max_artifact_bytes, int64_t{1} << 30,
          "Largest artifact file (or pushed artifact) accepted, in bytes.");
ABSL_FLAG(std::string, prior_device, "auto", "Where models run: auto, cpu, cuda or cuda:N.");
ABSL_FLAG(int, prior_threads, 1,
          "LibTorch intra-op threads per batch (0: LibTorch's default, all cores). Batches of "
          "different models and methods (and --prior_batch_instances) run in parallel anyway.");

namespace {

int Fail(const absl::Status& status) {
  std::cerr << "prl_prior_server: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  prl::RetainFreedMemory();
  prl::models::InstallCachingCpuAllocator();
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_prior_server: serves frozen PRL priors over gRPC.\n"
                              "Usage: prl_prior_server [--port=N] [--metrics_port=N] "
                              "[--prior_model_dir=DIR] [flags]");
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) return Fail(token.status());
  prl::models::SetInferenceThreads(absl::GetFlag(FLAGS_prior_threads));

  prl::prior_server::BatchingOptions batching;
  batching.max_batch_rows = absl::GetFlag(FLAGS_prior_max_batch_rows);
  batching.max_queue_delay = absl::Microseconds(absl::GetFlag(FLAGS_prior_max_queue_delay_us));
  batching.max_queue_rows = absl::GetFlag(FLAGS_prior_max_queue_rows);
  batching.instances = absl::GetFlag(FLAGS_prior_batch_instances);
  if (batching.instances == 0) {
    batching.instances = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 64);
  }
  if (absl::Status s = prl::prior_server::ValidateBatchingOptions(batching, "--prior_"); !s.ok()) {
    return Fail(s);
  }
  if (absl::GetFlag(FLAGS_prior_keep_versions) < 0) {
    return Fail(absl::InvalidArgumentError("--prior_keep_versions must be >= 0"));
  }
  if (absl::GetFlag(FLAGS_prior_max_request_rows) < 1) {
    return Fail(absl::InvalidArgumentError("--prior_max_request_rows must be >= 1"));
  }
  const std::string device = absl::GetFlag(FLAGS_prior_device);

  auto registry = std::make_shared<prometheus::Registry>();
  prl::prior_server::PriorMetrics metrics(*registry);
  prl::prior_server::RegistryOptions registry_options;
  registry_options.model_dir = absl::GetFlag(FLAGS_prior_model_dir);
  // models pushed to a server killed mid-write leave temporary files; the directory may be a
  // learner's model store too (one machine), so only those over an hour old are removed
  if (!registry_options.model_dir.empty()) {
    if (const int n = prl::RemoveStaleTempFiles(registry_options.model_dir, 1, absl::Hours(1))) {
      PRL_LOG(INFO) << "removed " << n << " unfinished model file(s) from "
                    << registry_options.model_dir;
    }
  }
  registry_options.keep_versions = absl::GetFlag(FLAGS_prior_keep_versions);
  registry_options.load_on_demand = absl::GetFlag(FLAGS_prior_load_on_demand);
  registry_options.batching = batching;
  registry_options.max_artifact_bytes = absl::GetFlag(FLAGS_prior_max_artifact_bytes);
  prl::prior_server::ModelRegistry models(
      registry_options,
      [device](absl::string_view bytes, absl::string_view source, const std::string& name,
               int64_t version) {
        prl::models::PriorLoadOptions options;
        options.device = device;
        options.name = name;
        options.version = version;
        return prl::models::LoadPrior(bytes, source, options);
      },
      &metrics);

  for (const std::string& spec : absl::GetFlag(FLAGS_prior_load)) {
    std::vector<std::string> parts = absl::StrSplit(spec, ':');
    prl::v1::LoadModelRequest request;
    request.set_name(parts[0]);
    int64_t version = 0;
    if (parts.size() > 2 || (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &version))) {
      return Fail(
          absl::InvalidArgumentError("--prior_load: '" + spec + "' is not name or name:version"));
    }
    request.set_version(version);
    absl::StatusOr<prl::v1::ModelInfo> info = models.Load(request);
    if (!info.ok()) return Fail(info.status());
    PRL_LOG(INFO) << "loaded model '" << info->name() << "' v" << info->version() << " from "
                  << info->artifact_path();
  }

  prl::prior_server::PriorServiceOptions options;
  options.auth_token = *token;
  options.max_request_rows = absl::GetFlag(FLAGS_prior_max_request_rows);
  prl::prior_server::PriorServiceImpl service(options, &models, &metrics);

  auto host = prl::ServerHost::Start(prl::ServerOptionsFromFlags("prior_server", 50053, 9153),
                                     {&service}, registry);
  if (!host.ok()) return Fail(host.status());
  return prl::ServeUntilSignal(**host);
}
