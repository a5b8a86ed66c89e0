// prl_actor: a CPU worker for the learner. It joins the learner at --actor_learner, runs the
// assignment it receives (batched MuJoCo envs, the published policy on the CPU, transitions
// streamed to the replay shards, finished episodes and evaluation rounds reported), follows
// reassignments, and reconnects with backoff when the learner, a shard or the network restarts.
// It serves gRPC health and /metrics (so launchers and Kubernetes can probe it); on
// SIGTERM/SIGINT it stops acting, reports its finished episodes, leaves the learner and exits.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actor/actor_loop.h"
#include "common/client.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "common/signals.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "models/policy_runner.h"
#include "models/torch_acting_policy.h"
#include "models/torch_prior_inference.h"
#include "prior_server/prior_client.h"

ABSL_FLAG(std::string, actor_learner, "127.0.0.1:50052", "Address of prl_learner (HOST:PORT).");
ABSL_FLAG(std::string, actor_prior, "auto",
          "How latent policies decode: inprocess (load the prior's artifact here), served (call "
          "the prior server at Assignment.prior_address), or auto (in-process when the artifact "
          "the prior server reports is a file this actor can read — one machine — else served). "
          "In-process is the faster path for small priors (docs/prior_server.md).");
ABSL_FLAG(int, actor_num_envs, 4, "Environments this actor steps as one batch (1..1024).");
ABSL_FLAG(std::string, actor_name, "",
          "Stable name of this actor for the learner (e.g. the pod name). Default: "
          "<hostname>-<pid>.");
ABSL_FLAG(int, actor_workers, 1, "Threads stepping the environments (the acting thread is one).");
ABSL_FLAG(absl::Duration, actor_rpc_timeout, absl::Seconds(5),
          "Deadline of each call to the learner; replay inserts get at most 2s of it (an insert "
          "held back by replay's rate limiter cannot be interrupted).");
ABSL_FLAG(std::string, actor_tls_ca, "",
          "PEM roots to verify the learner and replay shards with; empty: plaintext.");
ABSL_FLAG(std::string, actor_tls_server_name, "",
          "Name to expect in the learner's and shards' certificates (tests, IP addresses).");

namespace {

int Fail(const std::string& message) {
  std::cerr << "prl_actor: " << message << "\n";
  return 1;
}

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "actor";
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  prl::BlockTerminationSignals();
  prl::ParseServerCommandLine(argc, argv,
                              "prl_actor: a PRL actor (CPU environment worker).\n"
                              "Usage: prl_actor --actor_learner=HOST:PORT [flags]");
  const int num_envs = absl::GetFlag(FLAGS_actor_num_envs);
  if (num_envs < 1 || num_envs > 1024) {
    return Fail(absl::StrCat("--actor_num_envs=", num_envs,
                             " is not allowed; it must be between 1 and 1024"));
  }
  if (absl::GetFlag(FLAGS_actor_learner).empty()) {
    return Fail("--actor_learner must name the learner's HOST:PORT");
  }
  if (absl::GetFlag(FLAGS_actor_workers) < 1) {
    return Fail(absl::StrCat("--actor_workers=", absl::GetFlag(FLAGS_actor_workers),
                             " is not allowed; it must be at least 1"));
  }
  if (absl::GetFlag(FLAGS_actor_rpc_timeout) <= absl::ZeroDuration()) {
    return Fail("--actor_rpc_timeout must be positive");
  }
  // the token this actor sends on its mutating calls to the learner and replay.
  auto token = prl::AuthTokenFromFlags();
  if (!token.ok()) return Fail(std::string(token.status().message()));
  // the policy runs on the acting thread alone (DESIGN.md §11: an actor's policy needs one).
  prl::models::SetPolicyThreads(1);

  prl::actor::ActorLoopOptions options;
  options.learner_address = absl::GetFlag(FLAGS_actor_learner);
  options.channel.tls_ca_file = absl::GetFlag(FLAGS_actor_tls_ca);
  options.channel.tls_server_name = absl::GetFlag(FLAGS_actor_tls_server_name);
  options.auth_token = *token;
  options.actor_name = absl::GetFlag(FLAGS_actor_name);
  if (options.actor_name.empty()) options.actor_name = absl::StrCat(Hostname(), "-", getpid());
  options.num_envs = num_envs;
  options.workers = absl::GetFlag(FLAGS_actor_workers);
  options.rpc_timeout = absl::GetFlag(FLAGS_actor_rpc_timeout);
  options.insert_timeout = std::min(options.rpc_timeout, absl::Seconds(2));
  options.host.set_hostname(Hostname());
  options.host.set_pid(getpid());
  options.host.set_cpu_count(static_cast<int>(std::thread::hardware_concurrency()));
  options.host.set_build_version(prl::kVersion);
  options.policy_factory = prl::models::TorchActingPolicyFactory(std::random_device()());
  const std::string prior_mode = absl::GetFlag(FLAGS_actor_prior);
  if (prior_mode != "auto" && prior_mode != "inprocess" && prior_mode != "served") {
    return Fail("--actor_prior: '" + prior_mode + "' is not auto, inprocess or served");
  }
  prl::ChannelOptions prior_channel = options.channel;
  options.prior_connector = [prior_mode, prior_channel](const prl::v1::Assignment& a)
      -> absl::StatusOr<std::unique_ptr<prl::models::PriorInference>> {
    prl::ChannelOptions channel_options = prior_channel;
    channel_options.address = a.prior_address();
    PRL_ASSIGN_OR_RETURN(auto channel, prl::CreateChannel(channel_options));
    PRL_ASSIGN_OR_RETURN(std::unique_ptr<prl::prior_server::RemotePrior> remote,
                         prl::prior_server::RemotePrior::Connect(channel, a.prior()));
    const std::string path = remote->info().artifact_path();
    const bool readable = !path.empty() && access(path.c_str(), R_OK) == 0;
    if (prior_mode == "inprocess" || (prior_mode == "auto" && readable)) {
      prl::models::PriorLoadOptions load;
      load.device = "cpu";
      load.name = remote->info().name();
      load.version = remote->info().version();
      auto local = prl::models::LoadPriorFile(path, load);
      if (local.ok()) {
        PRL_LOG(INFO) << "prior " << prl::models::DescribeModel((*local)->info())
                      << " runs in-process from " << path;
        return local;
      }
      if (prior_mode == "inprocess") return local.status();
      PRL_LOG(WARNING) << "prior: in-process load failed (" << local.status()
                       << "); decoding through the prior server";
    }
    PRL_LOG(INFO) << "prior " << prl::models::DescribeModel(remote->info())
                  << " is decoded by the prior server at " << a.prior_address();
    return std::unique_ptr<prl::models::PriorInference>(std::move(remote));
  };

  auto registry = std::make_shared<prometheus::Registry>();
  auto loop = prl::actor::ActorLoop::Create(options, *registry);
  if (!loop.ok()) return Fail(std::string(loop.status().message()));
  auto host =
      prl::ServerHost::Start(prl::ServerOptionsFromFlags("actor", 50054, 9154), {}, registry);
  if (!host.ok()) return Fail(std::string(host.status().message()));
  PRL_LOG(INFO) << "actor " << options.actor_name << " for learner " << options.learner_address
                << " with " << num_envs << " envs";
  (*loop)->Start();
  std::cout << (*host)->ReadyLine() << std::endl;
  const int signal = prl::WaitForTerminationSignal();
  PRL_LOG(INFO) << "received signal " << signal << "; leaving the learner";
  (*loop)->Stop();
  (*host)->Shutdown();
  return 0;
}
