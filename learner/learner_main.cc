// prl_learner: the experiment service (for users), the actor service (for actors), gRPC health
// and /metrics. Runs the experiment queue, one experiment at a time (TRAIN, COLLECT,
// TRAIN_PRIOR), against the replay shards named by --learner_replay; keeps trained priors in
// <state_dir>/models and collected datasets in <state_dir>/datasets. On SIGTERM/SIGINT the running
// experiment checkpoints and stays RUNNING on disk; the next start resumes it.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/allocator.h"
#include "common/client.h"
#include "common/directory_lock.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "common/temp_files.h"
#include "learner/actor_registry.h"
#include "learner/algorithm.h"
#include "learner/algorithm_registry.h"
#include "learner/dataset_store.h"
#include "learner/device_math.h"
#include "learner/experiment_manager.h"
#include "learner/learner_metrics.h"
#include "learner/learner_services.h"
#include "learner/mcat_algorithm.h"
#include "learner/model_pusher.h"
#include "learner/model_store.h"
#include "learner/policy_store.h"
#include "learner/prior_models.h"
#include "learner/run_factory.h"
#include "learner/spec_validation.h"
#include "learner/spirl_algorithm.h"
#include "learner/training_run.h"
#include "models/cpu_allocator.h"
#include "prior_server/prior_client.h"
#include "prometheus/registry.h"

ABSL_FLAG(std::string, learner_prior_server, "",
          "host:port of a prl_prior_server that shares no file system with this learner "
          "(Kubernetes): every model the learner stores (TRAIN_PRIOR priors, mcat translators) "
          "is pushed to it (LoadModel with "
          "the artifact's bytes, the cluster's auth token). Empty: none (on one machine the "
          "prior server reads <state_dir>/models itself).");
ABSL_FLAG(std::string, learner_prior_address, "127.0.0.1:50053",
          "host:port at which actors reach the prior server that decodes prior-guided policies' "
          "latents (Assignment.prior_address).");
ABSL_FLAG(std::string, learner_prior_server_ca_file, "",
          "PEM root certificates for a TLS --learner_prior_server; empty: plaintext.");
ABSL_FLAG(std::string, learner_device, "auto",
          "Where the learner trains: auto (CUDA when present), cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, learner_state_dir, "state/learner",
          "Directory of the experiment records, curves and checkpoints.");
ABSL_FLAG(std::string, learner_replay, "",
          "Comma-separated host:port of the replay shards experiments train from.");
ABSL_FLAG(int, learner_torch_threads, 0,
          "Torch intra-op threads for updates (0: Torch's default).");
ABSL_FLAG(int, learner_updates_per_call, 0,
          "Most updates per step of the training loop: it takes the batches the replay feed "
          "already holds, up to this many, and a GPU learner queues their updates back to back. "
          "0: 4 on a CUDA device, 1 on the CPU; at most 64.");
ABSL_FLAG(int, learner_updates_per_graph, 1,
          "On a GPU with CUDA graphs: the updates of one step of the training loop in graph "
          "launches of this many (1: one launch per update); 1 to 16.");
ABSL_FLAG(bool, learner_tf32_products, false,
          "On a GPU: float32 matrix products on TF32 tensor cores (about 1e-3 relative "
          "precision instead of 1e-7; several times faster at large batches on Ampere and later; "
          "learner/device_math.h). Off: IEEE float32, as on the CPU.");
ABSL_FLAG(int64_t, learner_publish_every, 100, "Gradient updates between policy publications.");
ABSL_FLAG(absl::Duration, learner_checkpoint_period, absl::Minutes(2),
          "Time between checkpoints of the running experiment (a COLLECT run closes a "
          "segment of its dataset as often).");
ABSL_FLAG(absl::Duration, learner_first_checkpoint, absl::Seconds(10),
          "Time from the start of a run to its first checkpoint (a learner killed early loses "
          "at most this much; a COLLECT run closes its first dataset segment then).");
ABSL_FLAG(int64_t, learner_checkpoint_every_updates, 0,
          "Also checkpoint every this many updates (0: by time only).");
ABSL_FLAG(absl::Duration, learner_heartbeat_interval, absl::Seconds(2),
          "How often actors heartbeat; three missed intervals drop an actor.");

int main(int argc, char** argv) {
  prl::RetainFreedMemory();
  prl::models::InstallCachingCpuAllocator();
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_learner: PRL's experiment service and learner.\n"
                              "Usage: prl_learner --learner_replay=HOST:PORT,... [flags]");
  const std::string device = absl::GetFlag(FLAGS_learner_device);
  if (device != "auto" && device != "cpu" && device.rfind("cuda", 0) != 0) {
    std::cerr << "prl_learner: --learner_device='" << device
              << "' is not allowed; allowed: auto, cpu, cuda, cuda:N\n";
    return 1;
  }
  if (const int n = absl::GetFlag(FLAGS_learner_updates_per_call);
      n < 0 || n > prl::learner::kMaxUpdatesPerCall) {
    std::cerr << "prl_learner: --learner_updates_per_call=" << n
              << " is out of range; allowed: 0 (4 on a CUDA device, 1 on the CPU) to "
              << prl::learner::kMaxUpdatesPerCall << "\n";
    return 1;
  }
  if (const int n = absl::GetFlag(FLAGS_learner_updates_per_graph);
      n < 1 || n > prl::learner::kMaxUpdatesPerGraph) {
    std::cerr << "prl_learner: --learner_updates_per_graph=" << n
              << " is out of range; allowed: 1 to " << prl::learner::kMaxUpdatesPerGraph << "\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_learner_tf32_products)) {
    prl::learner::AllowTf32Products(true);
    PRL_LOG(INFO) << "learner: float32 products on a GPU use TF32 (--learner_tf32_products)";
  }
  if (absl::GetFlag(FLAGS_learner_publish_every) < 1) {
    std::cerr << "prl_learner: --learner_publish_every must be at least 1\n";
    return 1;
  }
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_learner: " << token.status().message() << "\n";
    return 1;
  }
  // The state directory is this learner's alone: a second learner started on it by mistake
  // stops here, before it touches a record, a checkpoint or a dataset segment.
  const std::string state_dir = absl::GetFlag(FLAGS_learner_state_dir);
  auto state_lock = prl::DirectoryLock::Acquire(state_dir, "prl_learner");
  if (!state_lock.ok()) {
    std::cerr << "prl_learner: --learner_state_dir: " << state_lock.status().message() << "\n";
    return 1;
  }
  // What a learner killed mid-write left behind: every temporary file of the experiment and
  // dataset stores (no other process writes there), and those over an hour old in the model
  // store, where a prior server on the same machine writes the models pushed to it.
  if (const int n = prl::RemoveStaleTempFiles(state_dir, 0, absl::ZeroDuration()) +
                    prl::RemoveStaleTempFiles(state_dir + "/experiments", 2, absl::ZeroDuration()) +
                    prl::RemoveStaleTempFiles(state_dir + "/datasets", 1, absl::ZeroDuration()) +
                    prl::RemoveStaleTempFiles(state_dir + "/models", 1, absl::Hours(1))) {
    PRL_LOG(INFO) << "removed " << n << " unfinished file(s) of an earlier learner from "
                  << state_dir;
  }
  std::vector<std::string> replay;
  for (absl::string_view a :
       absl::StrSplit(absl::GetFlag(FLAGS_learner_replay), ',', absl::SkipWhitespace())) {
    replay.emplace_back(a);
  }

  prl::learner::ActorRegistryOptions registry_options;
  registry_options.heartbeat_interval = absl::GetFlag(FLAGS_learner_heartbeat_interval);
  prl::learner::ActorRegistry registry(registry_options);
  prl::learner::PolicyStore policies;
  // built before the manager: a resumed experiment starts running inside Create
  auto metrics = std::make_shared<prometheus::Registry>();
  prl::learner::LearnerMetrics learner_metrics(*metrics);
  // spirl registers below, once the model store it reads priors from is open
  prl::learner::AlgorithmRegistry algorithms = prl::learner::DefaultAlgorithmRegistry();

  prl::learner::TrainingRunOptions run_options;
  run_options.replay_addresses = replay;
  run_options.call.auth_token = *token;
  run_options.call.timeout = absl::Seconds(30);
  run_options.registry = &registry;
  run_options.policies = &policies;
  run_options.algorithms = &algorithms;
  run_options.metrics = &learner_metrics;
  run_options.device = device;
  run_options.torch_threads = absl::GetFlag(FLAGS_learner_torch_threads);
  run_options.updates_per_call = absl::GetFlag(FLAGS_learner_updates_per_call);
  run_options.updates_per_graph = absl::GetFlag(FLAGS_learner_updates_per_graph);
  run_options.publish_every_updates = absl::GetFlag(FLAGS_learner_publish_every);
  run_options.checkpoint_period = absl::GetFlag(FLAGS_learner_checkpoint_period);
  run_options.first_checkpoint_period = absl::GetFlag(FLAGS_learner_first_checkpoint);
  run_options.checkpoint_every_updates = absl::GetFlag(FLAGS_learner_checkpoint_every_updates);

  // datasets written by COLLECT experiments: <state_dir>/datasets/<name>.hdf5 and .info
  auto dataset_store =
      prl::learner::DatasetStore::Open(absl::GetFlag(FLAGS_learner_state_dir) + "/datasets");
  if (!dataset_store.ok()) {
    std::cerr << "prl_learner: " << dataset_store.status().message() << "\n";
    return 1;
  }
  std::unique_ptr<prl::learner::ExperimentManager> manager;
  prl::learner::ExperimentManagerOptions manager_options;
  manager_options.state_dir = absl::GetFlag(FLAGS_learner_state_dir);
  const int replay_shards = static_cast<int>(replay.size());
  // Submit: the spec, then the dataset names it uses against the store and the experiments
  // still to run (Submit comes through the server, which starts once `manager` is set)
  manager_options.validate =
      [replay_shards, &manager, datasets = dataset_store->get()](
          const prl::v1::ExperimentSpec& spec) -> absl::StatusOr<prl::v1::ExperimentSpec> {
    absl::StatusOr<prl::v1::ExperimentSpec> filled =
        prl::learner::ValidateSpecForLearner(spec, replay_shards);
    if (!filled.ok()) return filled;
    std::vector<prl::v1::Experiment> pending;
    std::string token;
    do {
      auto page = manager->List(
          {prl::v1::EXPERIMENT_STATE_QUEUED, prl::v1::EXPERIMENT_STATE_RUNNING}, 1000, token);
      if (!page.ok()) return page.status();
      pending.insert(pending.end(), page->first.begin(), page->first.end());
      token = page->second;
    } while (!token.empty());
    if (absl::Status s = prl::learner::CheckDatasetReferences(*filled, *datasets, pending);
        !s.ok()) {
      return s;
    }
    return filled;
  };
  manager_options.on_state_counts = [&](const std::map<std::string, int>& counts) {
    learner_metrics.SetExperimentsByState(counts);
  };
  // trained priors: <state_dir>/models/<name>/v<version>.prl
  auto model_store =
      prl::learner::ModelStore::Open(absl::GetFlag(FLAGS_learner_state_dir) + "/models");
  if (!model_store.ok()) {
    std::cerr << "prl_learner: " << model_store.status().message() << "\n";
    return 1;
  }
  // On Kubernetes the prior server has its own volume: push each new model to it.
  std::unique_ptr<prl::learner::ModelPusher> pusher;
  if (const std::string address = absl::GetFlag(FLAGS_learner_prior_server); !address.empty()) {
    prl::ChannelOptions channel_options;
    channel_options.address = address;
    channel_options.tls_ca_file = absl::GetFlag(FLAGS_learner_prior_server_ca_file);
    auto channel = prl::CreateChannel(channel_options);
    if (!channel.ok()) {
      std::cerr << "prl_learner: --learner_prior_server: " << channel.status().message() << "\n";
      return 1;
    }
    prl::prior_server::RemotePriorOptions push_options;
    push_options.call.timeout = absl::Seconds(60);
    push_options.call.auth_token = *token;
    push_options.retry.max_attempts = 20;
    push_options.retry.total_timeout = absl::Minutes(5);
    pusher = std::make_unique<prl::learner::ModelPusher>(*channel, address, push_options);
    (*model_store)
        ->SetWriteListener(
            [p = pusher.get()](const std::string& name, int64_t version, const std::string& path) {
              p->Push(name, version, path);
            });
    // pushes queued when an earlier learner was killed died with it: bring the server up to
    // date with the store first
    pusher->CatchUp((*model_store)->List(),
                    [store = model_store->get()](const std::string& name, int64_t version) {
                      return store->PathOf(name, version);
                    });
  }
  algorithms.Register(
      prl::v1::AlgorithmSpec::kSpirl, "spirl",
      [store = model_store->get(), address = absl::GetFlag(FLAGS_learner_prior_address)](
          const prl::learner::AlgorithmOptions& options) {
        return prl::learner::CreateSpirlAlgorithm(options, {store, address});
      });
  algorithms.Register(
      prl::v1::AlgorithmSpec::kEap, "eap",
      [store = model_store->get(), address = absl::GetFlag(FLAGS_learner_prior_address)](
          const prl::learner::AlgorithmOptions& options) {
        return prl::learner::CreateEapAlgorithm(options, {store, address});
      });
  algorithms.Register(
      prl::v1::AlgorithmSpec::kParrot, "parrot",
      [store = model_store->get(), address = absl::GetFlag(FLAGS_learner_prior_address)](
          const prl::learner::AlgorithmOptions& options) {
        return prl::learner::CreateParrotAlgorithm(options, {store, address});
      });
  algorithms.Register(prl::v1::AlgorithmSpec::kMcat, "mcat",
                      [store = model_store->get()](const prl::learner::AlgorithmOptions& options) {
                        return prl::learner::CreateMcatAlgorithm(options, store);
                      });
  prl::learner::RunFactoryOptions factory_options;
  factory_options.training = run_options;
  factory_options.state_dir = absl::GetFlag(FLAGS_learner_state_dir);
  factory_options.prior_address = absl::GetFlag(FLAGS_learner_prior_address);
  factory_options.prior_training.models = model_store->get();
  factory_options.prior_training.datasets = dataset_store->get();
  factory_options.collect.replay_addresses = replay;
  factory_options.collect.call.auth_token = *token;
  factory_options.collect.call.timeout = absl::Seconds(10);
  factory_options.collect.registry = &registry;
  factory_options.collect.datasets = dataset_store->get();
  factory_options.collect.policies = &policies;
  factory_options.collect.metrics = &learner_metrics;
  factory_options.collect.first_segment_period = absl::GetFlag(FLAGS_learner_first_checkpoint);
  factory_options.collect.segment_period = absl::GetFlag(FLAGS_learner_checkpoint_period);
  factory_options.prior_training.factory = prl::learner::CreatePriorModel;
  factory_options.prior_training.metrics = &learner_metrics;
  factory_options.prior_training.device = device;
  factory_options.prior_training.torch_threads = absl::GetFlag(FLAGS_learner_torch_threads);
  // prior_training.publish: push the stored artifact's bytes to the prior server — the remote
  // one (--learner_prior_server) or the actors' (--learner_prior_address), which loads them as
  // the file it already has when it shares the model directory
  {
    const std::string address = absl::GetFlag(FLAGS_learner_prior_server).empty()
                                    ? absl::GetFlag(FLAGS_learner_prior_address)
                                    : absl::GetFlag(FLAGS_learner_prior_server);
    prl::ChannelOptions channel_options;
    channel_options.address = address;
    if (!absl::GetFlag(FLAGS_learner_prior_server).empty()) {
      channel_options.tls_ca_file = absl::GetFlag(FLAGS_learner_prior_server_ca_file);
    }
    auto channel = address.empty() ? absl::StatusOr<std::shared_ptr<grpc::Channel>>(
                                         absl::NotFoundError("no prior server address"))
                                   : prl::CreateChannel(channel_options);
    if (channel.ok()) {
      prl::prior_server::RemotePriorOptions publish_options;
      publish_options.call.timeout = absl::Seconds(60);
      publish_options.call.auth_token = *token;
      publish_options.retry.max_attempts = 5;
      publish_options.retry.total_timeout = absl::Minutes(2);
      factory_options.prior_training.publish = [channel = *channel, publish_options](
                                                   const std::string& name, int64_t version,
                                                   const std::string& path) -> absl::Status {
        std::ifstream file(path, std::ios::binary);
        std::stringstream bytes;
        bytes << file.rdbuf();
        if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
        return prl::prior_server::PushModel(channel, name, version, bytes.str(), publish_options)
            .status();
      };
    }
  }
  manager_options.run_factory = prl::learner::MakeRunFactory(factory_options);
  auto created = prl::learner::ExperimentManager::Create(manager_options);
  if (!created.ok()) {
    std::cerr << "prl_learner: " << created.status().message() << "\n";
    return 1;
  }
  manager = std::move(*created);

  prl::learner::LearnerServiceOptions options;
  options.auth_token = *token;
  const prl::ServerOptions server_options = prl::ServerOptionsFromFlags("learner", 50052, 9152);
  // Watch streams and waiting GetPolicy calls share half of the handler threads
  prl::learner::WaitingCallLimit waiting_calls(
      server_options.max_threads > 0 ? std::max(1, server_options.max_threads / 2) : 8);
  options.waiting_calls = &waiting_calls;
  prl::learner::ExperimentServiceImpl experiments(options, manager.get(), dataset_store->get());
  prl::learner::ActorServiceImpl actors(options, &registry, &policies);

  auto host = prl::ServerHost::Start(server_options, {&experiments, &actors}, metrics);
  if (!host.ok()) {
    std::cerr << "prl_learner: " << host.status().message() << "\n";
    manager->Shutdown();  // before the stores and the pusher it uses go
    return 1;
  }
  PRL_LOG(INFO) << "learner state in " << manager_options.state_dir << ", " << replay.size()
                << " replay shards, device " << device;
  const int code = prl::ServeUntilSignal(**host);
  // the running experiment checkpoints and stays RUNNING for the next start
  manager->Shutdown();
  return code;
}
