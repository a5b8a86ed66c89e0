// prlctl: the PRL command line.
//
//   prlctl health ADDRESS...        ask servers' health services
//   prlctl validate SPEC_FILE       parse a text-format ExperimentSpec locally
//   prlctl submit SPEC_FILE         submit an experiment to the learner
//   prlctl list | get ID | stop ID | watch ID
//   prlctl plot ID...              learning curves (mean ± std per group) to a PNG
//   prlctl datasets [NAME]         datasets in the learner's dataset store (COLLECT outputs)
//   prlctl models [NAME] | load-model NAME [FILE] | unload-model NAME [VERSION]  (prior server)
//
// Every call has a deadline (--timeout; --watch_timeout for watch). Mutating calls carry the
// bearer token from --auth_token_file or $PRL_AUTH_TOKEN.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/plot_script.h"
#include "cli/spec_file.h"
#include "common/auth.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/version.h"
#include "google/protobuf/text_format.h"
#include "proto/experiment.grpc.pb.h"
#include "proto/prior.grpc.pb.h"

ABSL_FLAG(std::string, learner, "",
          "Address of prl_learner (HOST:PORT); empty: $PRL_LEARNER, else 127.0.0.1:50052.");
ABSL_FLAG(std::string, prior_server, "",
          "Address of prl_prior_server (HOST:PORT) for models, load-model, unload-model; empty: "
          "$PRL_PRIOR_SERVER (a local cluster's cluster.env sets it), else 127.0.0.1:50053.");
ABSL_FLAG(int64_t, version, 0,
          "load-model: the version to load (from the server's directory; 0: the newest) or to "
          "register FILE as (0: one more than the newest known).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each call.");
ABSL_FLAG(absl::Duration, watch_timeout, absl::Hours(24), "Deadline of a watch stream.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token for mutating calls. Default: $PRL_AUTH_TOKEN.");
ABSL_FLAG(std::string, tls_ca, "", "PEM roots to verify TLS servers with; empty: plaintext.");
ABSL_FLAG(std::string, tls_server_name, "", "Name to expect in the server's certificate.");
ABSL_FLAG(std::string, output, "curves.png", "plot: the PNG to write.");
ABSL_FLAG(int64_t, seed, -1,
          "submit: override the spec's env.seed and algorithm.seed (for runs over seeds); -1 keeps "
          "the spec's.");
ABSL_FLAG(int64_t, max_env_steps, 0,
          "submit: override the spec's stop.max_env_steps (0 keeps it).");
ABSL_FLAG(std::string, metric, "eval",
          "plot: eval (evaluation return) or train (training return).");
ABSL_FLAG(std::string, group_by, "name",
          "plot: curves are averaged over experiments with the same spec name (name) or the same "
          "value of this label (any other value is a label key).");
ABSL_FLAG(std::string, csv, "", "plot: also write the plotted points to this CSV file.");

namespace prl::cli {
namespace {

constexpr char kUsage[] =
    "prlctl: the PRL command line.\n"
    "\n"
    "  prlctl health ADDRESS...     health of PRL servers (HOST:PORT each)\n"
    "  prlctl validate SPEC_FILE    parse a text-format ExperimentSpec locally\n"
    "  prlctl submit SPEC_FILE      submit an experiment; prints its id (--seed=N and\n"
    "                               --max_env_steps=N override the spec's)\n"
    "  prlctl list                  experiments, newest first\n"
    "  prlctl get ID                one experiment, in text format\n"
    "  prlctl stop ID               stop a queued or running experiment\n"
    "  prlctl watch ID              follow an experiment's progress until it ends\n"
    "  prlctl plot ID...            learning curves, mean ± std over seeds, to --output PNG\n"
    "  prlctl datasets [NAME]       datasets COLLECT experiments stored on the learner\n"
    "  prlctl models [NAME]         priors the prior server has loaded or can load\n"
    "  prlctl load-model NAME [FILE]  serve NAME from the server's model directory\n"
    "                               (--version=N), or FILE from here (a PRL artifact or a\n"
    "                               TorchScript .pt; its bytes are sent)\n"
    "  prlctl unload-model NAME [VERSION]  stop serving one version, or all\n"
    "\n"
    "Flags go before or after the command, e.g. prlctl --learner=host:50052 list";

int Fail(const absl::Status& status, absl::string_view what) {
  std::cerr << "prlctl: " << what << ": " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

// A flag's address, else the environment variable's, else the default.
std::string AddressOf(const std::string& flag, const char* env_name, const char* fallback) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv(env_name);
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(fallback);
}

std::string LearnerAddress() {
  return AddressOf(absl::GetFlag(FLAGS_learner), "PRL_LEARNER", "127.0.0.1:50052");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const std::string& address) {
  ChannelOptions options;
  options.address = address;
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return CreateChannel(options);
}

absl::StatusOr<CallOptions> Call(absl::Duration timeout) {
  CallOptions options;
  options.timeout = timeout;
  const std::string file = absl::GetFlag(FLAGS_auth_token_file);
  if (!file.empty()) {
    auto token = ReadTokenFile(file);
    if (!token.ok()) return token.status();
    options.auth_token = *token;
  } else if (const char* env = std::getenv("PRL_AUTH_TOKEN"); env != nullptr) {
    options.auth_token = env;
  }
  return options;
}

std::string StateName(v1::ExperimentState state) {
  std::string name = v1::ExperimentState_Name(state);
  absl::string_view short_name(name);
  absl::ConsumePrefix(&short_name, "EXPERIMENT_STATE_");
  return std::string(short_name);
}

int Health(const std::vector<std::string>& addresses) {
  if (addresses.empty()) return Fail(absl::InvalidArgumentError("give HOST:PORT"), "health");
  int bad = 0;
  for (const std::string& address : addresses) {
    auto channel = Connect(address);
    auto call = Call(absl::GetFlag(FLAGS_timeout));
    absl::Status status = !channel.ok() ? channel.status()
                          : !call.ok()  ? call.status()
                                        : CheckHealth(*channel, *call);
    std::cout << absl::StrFormat("%-24s %s\n", address,
                                 status.ok() ? "SERVING" : std::string(status.message()));
    if (!status.ok()) ++bad;
  }
  return bad == 0 ? 0 : 1;
}

int Validate(const std::string& path) {
  auto spec = ReadSpecFile(path);
  if (!spec.ok()) return Fail(spec.status(), "validate");
  std::cout << path << ": a well-formed ExperimentSpec '" << spec->name()
            << "' (the learner checks values on submit)\n";
  return 0;
}

// Runs one unary ExperimentService call against the learner.
template <typename Request, typename Response>
int Unary(absl::string_view what,
          grpc::Status (v1::ExperimentService::Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
          const Request& request, Response* response) {
  auto channel = Connect(LearnerAddress());
  if (!channel.ok()) return Fail(channel.status(), what);
  auto call = Call(absl::GetFlag(FLAGS_timeout));
  if (!call.ok()) return Fail(call.status(), what);
  auto stub = v1::ExperimentService::NewStub(*channel);
  grpc::ClientContext context;
  PrepareContext(*call, &context);
  grpc::Status status = ((*stub).*method)(&context, request, response);
  if (!status.ok()) {
    return Fail(FromGrpcStatus(status), absl::StrCat(what, " (learner ", LearnerAddress(), ")"));
  }
  return 0;
}

// Runs one unary PriorService call against --prior_server.
template <typename Request, typename Response>
int PriorUnary(absl::string_view what,
               grpc::Status (v1::PriorService::Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
               const Request& request, Response* response) {
  const std::string address =
      AddressOf(absl::GetFlag(FLAGS_prior_server), "PRL_PRIOR_SERVER", "127.0.0.1:50053");
  auto channel = Connect(address);
  if (!channel.ok()) return Fail(channel.status(), what);
  auto call = Call(absl::GetFlag(FLAGS_timeout));
  if (!call.ok()) return Fail(call.status(), what);
  auto stub = v1::PriorService::NewStub(*channel);
  grpc::ClientContext context;
  PrepareContext(*call, &context);
  grpc::Status status = ((*stub).*method)(&context, request, response);
  if (!status.ok()) {
    return Fail(FromGrpcStatus(status), absl::StrCat(what, " (prior server ", address, ")"));
  }
  return 0;
}

std::string KindName(v1::PriorKind kind) {
  std::string name = v1::PriorKind_Name(kind);
  absl::string_view short_name(name);
  absl::ConsumePrefix(&short_name, "PRIOR_KIND_");
  return std::string(short_name);
}

void PrintModels(const google::protobuf::RepeatedPtrField<v1::ModelInfo>& models) {
  std::cout << absl::StrFormat("%-24s %7s %-14s %-8s %-22s %s\n", "NAME", "VERSION", "KIND",
                               "LOADED", "DIMS (obs/act/z/H)", "METHODS");
  for (const v1::ModelInfo& m : models) {
    std::cout << absl::StrFormat(
        "%-24s %7d %-14s %-8s %-22s %s\n", m.name(), m.version(), KindName(m.kind()),
        m.loaded() ? "yes" : "no",
        absl::StrCat(m.obs_dim(), "/", m.action_dim(), "/", m.latent_dim(), "/", m.horizon()),
        absl::StrJoin(m.methods(), ","));
  }
}

// prlctl models [NAME]: what the prior server has loaded and can load.
int Models(const std::vector<std::string>& args) {
  if (args.size() > 1) return Fail(absl::InvalidArgumentError("give at most one NAME"), "models");
  v1::ListModelsRequest request;
  if (!args.empty()) request.set_name(args[0]);
  request.set_include_unloaded(true);
  v1::ListModelsResponse response;
  const int rc = PriorUnary("models", &v1::PriorService::Stub::ListModels, request, &response);
  if (rc == 0) PrintModels(response.models());
  return rc;
}

// prlctl load-model NAME [FILE]: serve NAME from the server's model directory (--version, 0 the
// newest) or from FILE on this machine (its bytes are sent; a PRL artifact or a TorchScript .pt).
int LoadModel(const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    return Fail(absl::InvalidArgumentError("give NAME [FILE]"), "load-model");
  }
  v1::LoadModelRequest request;
  request.set_name(args[0]);
  request.set_version(absl::GetFlag(FLAGS_version));
  if (args.size() == 2) {
    std::ifstream in(args[1], std::ios::binary);
    if (!in) return Fail(absl::NotFoundError(absl::StrCat("cannot read ", args[1])), "load-model");
    request.set_artifact(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  v1::LoadModelResponse response;
  const int rc = PriorUnary("load-model", &v1::PriorService::Stub::LoadModel, request, &response);
  if (rc != 0) return rc;
  google::protobuf::RepeatedPtrField<v1::ModelInfo> one;
  *one.Add() = response.model();
  PrintModels(one);
  return 0;
}

// prlctl unload-model NAME [VERSION]: stop serving one version (or all, without VERSION).
int UnloadModel(const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    return Fail(absl::InvalidArgumentError("give NAME [VERSION]"), "unload-model");
  }
  v1::UnloadModelRequest request;
  request.set_name(args[0]);
  if (args.size() == 2) {
    int64_t version = 0;
    if (!absl::SimpleAtoi(args[1], &version)) {
      return Fail(
          absl::InvalidArgumentError(absl::StrCat("VERSION '", args[1], "' is not a number")),
          "unload-model");
    }
    request.set_version(version);
  }
  v1::UnloadModelResponse response;
  const int rc =
      PriorUnary("unload-model", &v1::PriorService::Stub::UnloadModel, request, &response);
  if (rc != 0) return rc;
  for (const v1::PriorRef& ref : response.unloaded()) {
    std::cout << "unloaded " << ref.name() << " v" << ref.version() << "\n";
  }
  return 0;
}

// prlctl datasets [NAME]: what the learner's dataset store holds.
int Datasets(const std::vector<std::string>& args) {
  if (args.size() > 1) {
    return Fail(absl::InvalidArgumentError("give at most one NAME"), "datasets");
  }
  v1::ListDatasetsRequest request;
  if (!args.empty()) request.set_name(args[0]);
  v1::ListDatasetsResponse response;
  const int rc = Unary("datasets", &v1::ExperimentService::Stub::ListDatasets, request, &response);
  if (rc != 0) return rc;
  std::cout << absl::StrFormat("%-24s %9s %12s %-9s %-12s %-20s %s\n", "NAME", "EPISODES",
                               "TRANSITIONS", "OBS/ACT", "EXPERIMENT", "CREATED", "SHA-256");
  for (const v1::DatasetInfo& d : response.datasets()) {
    absl::string_view hash = d.content_hash();
    absl::ConsumePrefix(&hash, "sha256:");
    std::cout << absl::StrFormat(
        "%-24s %9d %12d %-9s %-12s %-20s %s\n", d.name(), d.episodes(), d.transitions(),
        absl::StrCat(d.obs_dim(), "/", d.action_dim()), d.experiment_id(),
        absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(d.create_time().seconds()),
                         absl::LocalTimeZone()),
        hash.substr(0, 16));
  }
  if (!args.empty() && response.datasets_size() == 1) {
    std::cout << "path: " << response.datasets(0).path() << "\n"
              << "hash: " << response.datasets(0).content_hash() << "\n";
  }
  for (const std::string& problem : response.problems()) {
    std::cerr << "prlctl datasets: unreadable: " << problem << "\n";
  }
  return 0;
}

void PrintProgressLine(const v1::Experiment& e) {
  const v1::Progress& p = e.progress();
  const int width = 30;
  // the server's fraction is clamped: a bar never over- or under-fills.
  const int filled =
      static_cast<int>(std::clamp<long>(std::lround(p.fraction_done() * width), 0, width));
  const bool collect = e.spec().kind() == v1::ExperimentSpec::KIND_COLLECT;
  if (collect) {
    // a collection: episodes and transitions stored in the dataset
    const v1::CollectSpec& c = e.spec().collect();
    const std::string episodes =
        c.num_episodes() > 0 ? absl::StrFormat("%d/%d episodes", p.episodes(), c.num_episodes())
                             : absl::StrFormat("%d episodes", p.episodes());
    const std::string steps = c.num_env_steps() > 0
                                  ? absl::StrFormat("%d/%d steps", p.env_steps(), c.num_env_steps())
                                  : absl::StrFormat("%d steps", p.env_steps());
    std::cout << absl::StrFormat("\r%-9s [%s%s] %5.1f%%  %s  %s  %.0f steps/s  return %.2f   ",
                                 StateName(e.state()), std::string(filled, '#'),
                                 std::string(width - filled, '.'), 100 * p.fraction_done(),
                                 episodes, steps, p.env_steps_per_second(), p.latest_train_return())
              << std::flush;
    return;
  }
  const int64_t target = e.spec().stop().max_env_steps();
  const std::string steps = target > 0 ? absl::StrFormat("%d/%d steps", p.env_steps(), target)
                                       : absl::StrFormat("%d steps", p.env_steps());
  const std::string eval = p.eval_rounds() > 0
                               ? absl::StrFormat("eval %.2f", p.latest_eval_return())
                               : std::string("eval -");
  std::cout << absl::StrFormat("\r%-9s [%s%s] %5.1f%%  %s  %.0f steps/s  %d updates  %s  v%d   ",
                               StateName(e.state()), std::string(filled, '#'),
                               std::string(width - filled, '.'), 100 * p.fraction_done(), steps,
                               p.env_steps_per_second(), p.updates(), eval, p.policy_version())
            << std::flush;
}

int Watch(const std::string& id) {
  auto channel = Connect(LearnerAddress());
  if (!channel.ok()) return Fail(channel.status(), "watch");
  auto call = Call(absl::GetFlag(FLAGS_watch_timeout));
  if (!call.ok()) return Fail(call.status(), "watch");
  auto stub = v1::ExperimentService::NewStub(*channel);
  grpc::ClientContext context;
  PrepareContext(*call, &context);
  v1::WatchRequest request;
  request.set_id(id);
  auto reader = stub->Watch(&context, request);
  v1::WatchResponse update;
  v1::Experiment last;
  std::string message;
  while (reader->Read(&update)) {
    last = update.experiment();
    // the run's notes (e.g. "resumed from the checkpoint at ...") on lines of their own
    if (!last.progress().message().empty() && last.progress().message() != message) {
      message = last.progress().message();
      std::cout << "\r" << message << std::string(40, ' ') << "\n";
    }
    PrintProgressLine(last);
  }
  grpc::Status status = reader->Finish();
  std::cout << "\n";
  if (!status.ok()) return Fail(FromGrpcStatus(status), "watch");
  if (!last.failure_reason().empty()) std::cout << "failed: " << last.failure_reason() << "\n";
  return last.state() == v1::EXPERIMENT_STATE_SUCCEEDED ? 0 : 1;
}

// Fetches each experiment's curve and plots mean ± std per group with python3/matplotlib.
int Plot(const std::vector<std::string>& ids) {
  if (ids.empty()) return Fail(absl::InvalidArgumentError("give experiment IDs"), "plot");
  const std::string metric = absl::GetFlag(FLAGS_metric);
  if (metric != "eval" && metric != "train") {
    return Fail(absl::InvalidArgumentError(
                    absl::StrCat("--metric=", metric, " is not allowed; use eval or train")),
                "plot");
  }
  const std::string group_by = absl::GetFlag(FLAGS_group_by);
  std::string csv = "group,experiment,env_steps,value\n";
  int points = 0;
  for (const std::string& id : ids) {
    v1::GetRequest request;
    request.set_id(id);
    request.set_include_curve(true);
    v1::GetResponse response;
    if (int rc = Unary("plot", &v1::ExperimentService::Stub::Get, request, &response); rc != 0) {
      return rc;
    }
    const v1::Experiment& e = response.experiment();
    std::string group = e.spec().name();
    if (group_by != "name") {
      auto it = e.spec().labels().find(group_by);
      group = it == e.spec().labels().end() ? "(no " + group_by + ")" : it->second;
    }
    for (const v1::CurvePoint& p : e.curve()) {
      const bool has = metric == "eval" ? p.eval_episodes() > 0 : p.train_episodes() > 0;
      if (!has) continue;
      absl::StrAppendFormat(&csv, "%s,%s,%d,%.6g\n", group, id, p.env_steps(),
                            metric == "eval" ? p.eval_return() : p.train_return());
      ++points;
    }
  }
  if (points == 0) {
    return Fail(absl::FailedPreconditionError("the experiments have no curve points yet"), "plot");
  }
  const std::string csv_out = absl::GetFlag(FLAGS_csv);
  const std::string csv_path =
      csv_out.empty() ? absl::StrCat("/tmp/prlctl_plot_", getpid(), ".csv") : csv_out;
  const std::string script_path = absl::StrCat("/tmp/prlctl_plot_", getpid(), ".py");
  std::ofstream(csv_path) << csv;
  std::ofstream(script_path) << PlotScript();
  const std::string title = metric == "eval" ? "evaluation return" : "training return";
  // the first Python with matplotlib: $PRL_PYTHON, Debian's (where scripts/setup.sh installs
  // python3-matplotlib), then whatever python3 is on PATH
  std::string python = "python3";
  const char* env_python = std::getenv("PRL_PYTHON");
  for (const std::string& candidate :
       {std::string(env_python != nullptr ? env_python : ""), std::string("/usr/bin/python3")}) {
    if (candidate.empty()) continue;
    const std::string probe =
        absl::StrCat("'", candidate, "' -c 'import matplotlib' >/dev/null 2>&1");
    if (std::system(probe.c_str()) == 0) {
      python = candidate;
      break;
    }
  }
  const std::string command =
      absl::StrCat("'", python, "' '", script_path, "' '", csv_path, "' '",
                   absl::GetFlag(FLAGS_output), "' '", title, "' 'mean return'");
  const int rc = std::system(command.c_str());
  std::remove(script_path.c_str());
  if (csv_out.empty()) std::remove(csv_path.c_str());
  if (rc != 0) {
    return Fail(absl::InternalError("python3 with matplotlib failed (scripts/setup.sh installs "
                                    "python3-matplotlib)"),
                "plot");
  }
  return 0;
}

int Run(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kUsage << "\n";
    return 2;
  }
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  auto need_one = [&](absl::string_view what) {
    if (rest.size() == 1) return true;
    std::cerr << "prlctl " << command << ": expects exactly one " << what << "\n";
    return false;
  };
  if (command == "health") return Health(rest);
  if (command == "version") {
    std::cout << "prlctl " << kVersion << "\n";
    return 0;
  }
  if (command == "validate") return need_one("SPEC_FILE") ? Validate(rest[0]) : 2;
  if (command == "submit") {
    if (!need_one("SPEC_FILE")) return 2;
    auto spec = ReadSpecFile(rest[0]);
    if (!spec.ok()) return Fail(spec.status(), "submit");
    v1::SubmitRequest request;
    *request.mutable_spec() = *spec;
    if (const int64_t seed = absl::GetFlag(FLAGS_seed); seed >= 0) {
      request.mutable_spec()->mutable_env()->set_seed(seed);
      request.mutable_spec()->mutable_algorithm()->set_seed(seed);
      (*request.mutable_spec()->mutable_labels())["seed"] = absl::StrCat(seed);
    }
    if (const int64_t steps = absl::GetFlag(FLAGS_max_env_steps); steps > 0) {
      request.mutable_spec()->mutable_stop()->set_max_env_steps(steps);
    }
    v1::SubmitResponse response;
    int rc = Unary("submit", &v1::ExperimentService::Stub::Submit, request, &response);
    if (rc == 0) std::cout << response.id() << "\n";
    return rc;
  }
  if (command == "list") {
    v1::ListResponse response;
    int rc = Unary("list", &v1::ExperimentService::Stub::List, v1::ListRequest(), &response);
    if (rc != 0) return rc;
    std::cout << absl::StrFormat("%-14s %-24s %-10s %12s %10s\n", "ID", "NAME", "STATE", "STEPS",
                                 "EVAL");
    for (const v1::Experiment& e : response.experiments()) {
      std::cout << absl::StrFormat("%-14s %-24s %-10s %12d %10.2f\n", e.id(), e.spec().name(),
                                   StateName(e.state()), e.progress().env_steps(),
                                   e.progress().latest_eval_return());
    }
    return 0;
  }
  if (command == "get" || command == "stop") {
    if (!need_one("ID")) return 2;
    v1::Experiment experiment;
    int rc;
    if (command == "get") {
      v1::GetRequest request;
      request.set_id(rest[0]);
      v1::GetResponse response;
      rc = Unary("get", &v1::ExperimentService::Stub::Get, request, &response);
      experiment = response.experiment();
    } else {
      v1::StopRequest request;
      request.set_id(rest[0]);
      request.set_reason("stopped with prlctl");
      v1::StopResponse response;
      rc = Unary("stop", &v1::ExperimentService::Stub::Stop, request, &response);
      experiment = response.experiment();
    }
    if (rc != 0) return rc;
    std::string text;
    google::protobuf::TextFormat::PrintToString(experiment, &text);
    std::cout << text;
    return 0;
  }
  if (command == "watch") return need_one("ID") ? Watch(rest[0]) : 2;
  if (command == "plot") return Plot(rest);
  if (command == "datasets") return Datasets(rest);
  if (command == "models") return Models(rest);
  if (command == "load-model") return LoadModel(rest);
  if (command == "unload-model") return UnloadModel(rest);
  std::cerr << "prlctl: unknown command '" << command << "'\n\n" << kUsage << "\n";
  return 2;
}

}  // namespace
}  // namespace prl::cli

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(prl::cli::kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  return prl::cli::Run(args);
}
