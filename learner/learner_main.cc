// prl_learner: the experiment service (for users), the actor service (for actors), gRPC health
// and /metrics. Runs the experiment queue, one TRAIN experiment at a time, against the replay
// shards named by --learner_replay. On SIGTERM/SIGINT the running experiment checkpoints and
// stays RUNNING on disk; the next start resumes it.
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "learner/actor_registry.h"
#include "learner/algorithm_registry.h"
#include "learner/experiment_manager.h"
#include "learner/learner_metrics.h"
#include "learner/learner_services.h"
#include "learner/model_pusher.h"
#include "learner/model_store.h"
#include "learner/policy_store.h"
#include "learner/prior_models.h"
#include "learner/run_factory.h"
#include "learner/spec_validation.h"
#include "learner/spirl_algorithm.h"
#include "learner/training_run.h"
#include "prometheus/registry.h"

ABSL_FLAG(std::string, learner_prior_server, "",
          "host:port of a prl_prior_server that shares no file system with this learner "
          "(Kubernetes): every model a TRAIN_PRIOR run stores is pushed to it (LoadModel with "
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
ABSL_FLAG(int64_t, learner_publish_every, 100, "Gradient updates between policy publications.");
ABSL_FLAG(absl::Duration, learner_checkpoint_period, absl::Minutes(2),
          "Time between checkpoints of the running experiment.");
ABSL_FLAG(absl::Duration, learner_first_checkpoint, absl::Seconds(10),
          "Time from the start of a run to its first checkpoint (a learner killed early loses "
          "at most this much).");
ABSL_FLAG(int64_t, learner_checkpoint_every_updates, 0,
          "Also checkpoint every this many updates (0: by time only).");
ABSL_FLAG(absl::Duration, learner_heartbeat_interval, absl::Seconds(2),
          "How often actors heartbeat; three missed intervals drop an actor.");

int main(int argc, char** argv) {
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
  if (absl::GetFlag(FLAGS_learner_publish_every) < 1) {
    std::cerr << "prl_learner: --learner_publish_every must be at least 1\n";
    return 1;
  }
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) {
    std::cerr << "prl_learner: " << token.status().message() << "\n";
    return 1;
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
  run_options.publish_every_updates = absl::GetFlag(FLAGS_learner_publish_every);
  run_options.checkpoint_period = absl::GetFlag(FLAGS_learner_checkpoint_period);
  run_options.first_checkpoint_period = absl::GetFlag(FLAGS_learner_first_checkpoint);
  run_options.checkpoint_every_updates = absl::GetFlag(FLAGS_learner_checkpoint_every_updates);

  prl::learner::ExperimentManagerOptions manager_options;
  manager_options.state_dir = absl::GetFlag(FLAGS_learner_state_dir);
  const int replay_shards = static_cast<int>(replay.size());
  manager_options.validate = [replay_shards](const prl::v1::ExperimentSpec& spec) {
    return prl::learner::ValidateSpecForLearner(spec, replay_shards);
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
  prl::learner::RunFactoryOptions factory_options;
  factory_options.training = run_options;
  factory_options.state_dir = absl::GetFlag(FLAGS_learner_state_dir);
  factory_options.prior_training.models = model_store->get();
  factory_options.prior_training.factory = prl::learner::CreatePriorModel;
  factory_options.prior_training.metrics = &learner_metrics;
  factory_options.prior_training.device = device;
  factory_options.prior_training.torch_threads = absl::GetFlag(FLAGS_learner_torch_threads);
  std::unique_ptr<prl::learner::ExperimentManager> manager;
  manager_options.run_factory = prl::learner::MakeRunFactory(factory_options);
  auto created = prl::learner::ExperimentManager::Create(manager_options);
  if (!created.ok()) {
    std::cerr << "prl_learner: " << created.status().message() << "\n";
    return 1;
  }
  manager = std::move(*created);

  prl::learner::LearnerServiceOptions options;
  options.auth_token = *token;
  prl::learner::ExperimentServiceImpl experiments(options, manager.get());
  prl::learner::ActorServiceImpl actors(options, &registry, &policies);

  auto host = prl::ServerHost::Start(prl::ServerOptionsFromFlags("learner", 50052, 9152),
                                     {&experiments, &actors}, metrics);
  if (!host.ok()) {
    std::cerr << "prl_learner: " << host.status().message() << "\n";
    return 1;
  }
  PRL_LOG(INFO) << "learner state in " << manager_options.state_dir << ", " << replay.size()
                << " replay shards, device " << device;
  const int code = prl::ServeUntilSignal(**host);
  // the running experiment checkpoints and stays RUNNING for the next start
  manager->Shutdown();
  return code;
}
