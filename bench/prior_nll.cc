// prior_nll: how well does a trained PARROT flow (models/real_nvp.h) model the actions of
// episodes it never saw, against simple densities fitted to the same data? It rebuilds the
// train/validation split of the TRAIN_PRIOR run that trained the flow (learner/window_dataset.h,
// horizon 1, the run's seed and validation fraction: every validation window is one transition
// of a held-out episode) and prints the mean negative log-likelihood per validation transition,
// in nats, of
//
//   flow               −log p(a | s) of the flow (its tanh included; PARROT eq. 2)
//   gaussian           a diagonal Gaussian over a, fitted by maximum likelihood to the training
//                      transitions' actions (unconditional)
//   linear gaussian    a ~ N(W·[s, 1], diag σ²), W by least squares and σ² the residual
//                      variances on the training transitions (the maximum-likelihood fit)
//   tanh-gaussian,     the same two fitted to u = atanh(a) instead, so a = tanh(u): the flow's
//   linear tanh-gaussian  own treatment of the action box (|a| clamped to 1 − 1e-6 first, the
//                      tanh's log-determinant in the density); a flow with no coupling layers
//
// all in the same action space (a in [-1, 1]^A). Actions that were clipped to the box's edge
// make the densities' values there depend on how close to the edge each model piles its mass, so
// the NLL is also given separately over the transitions with every |a_d| < 1 − 1e-6 (interior)
// and the rest (edge).
//
// The baselines are fitted from sufficient statistics: those of the training transitions are
// those of the whole file minus the validation transitions' (with horizon 1 every row is a
// window, so the two sets partition the rows; checked).
//
//   prior_nll --model=state/prior_nll/learner/models/maze-flow/v1.prl
//   (the dataset and the split seed come from the artifact; --dataset and --seed override)
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "ATen/Parallel.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "c10/core/InferenceMode.h"
#include "common/dataset_reader.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"
#include "learner/window_dataset.h"
#include "models/artifact.h"
#include "models/real_nvp.h"
#include "proto/experiment.pb.h"

ABSL_FLAG(std::string, model, "", "A REAL_NVP_FLOW artifact (.prl). Required.");
ABSL_FLAG(std::string, dataset, "", "The dataset it was trained on (default: the artifact's).");
ABSL_FLAG(int64_t, seed, -1,
          "The training run's seed, which chose the validation episodes "
          "(default: the artifact's training spec).");
ABSL_FLAG(double, validation_fraction, 0.1, "The learner's validation fraction (its default).");
ABSL_FLAG(std::string, json, "", "Append the results as one JSON line to this file.");

namespace prl::bench {
namespace {

constexpr double kLog2Pi = 1.8378770664093453;

// Rows of one split as double tensors: states x [N, O] and actions a [N, A].
struct Rows {
  at::Tensor x, a;
};

// u = atanh(a) with |a| clamped as the flow clamps it, and Σ_d log(1 − a_d²) per row: the
// density of a = tanh(u) is that of u minus this term, so NLL(a) = NLL(u) + this.
std::pair<at::Tensor, at::Tensor> Atanh(const at::Tensor& a) {
  at::Tensor c = a.clamp(-models::kRealNvpMaxAbsAction, models::kRealNvpMaxAbsAction);
  return {at::atanh(c), at::log1p(-c.square()).sum(1)};
}

// Sufficient statistics of a linear-Gaussian fit of targets y [N, D] on features [x, 1]:
// XᵀX [(O+1)²] (its last entry is N), Xᵀy [O+1, D] (its last row is Σy) and Σy² [D].
struct Stats {
  at::Tensor xtx, xty, yy;
  Stats operator-(const Stats& o) const { return {xtx - o.xtx, xty - o.xty, yy - o.yy}; }
};
Stats Accumulate(const at::Tensor& x, const at::Tensor& y) {
  at::Tensor f = at::cat({x, at::ones({x.size(0), 1}, x.options())}, 1);
  return {f.t().mm(f), f.t().mm(y), y.square().sum(0)};
}

// A diagonal Gaussian per row with mean [s, 1]·w: w [O+1, D] (unconditional: only the last row
// is non-zero) and variances var [D].
struct LinearGaussian {
  at::Tensor w, var;
  // −log N(y; mean(x), diag var) per row.
  at::Tensor Nll(const at::Tensor& x, const at::Tensor& y) const {
    at::Tensor f = at::cat({x, at::ones({x.size(0), 1}, x.options())}, 1);
    at::Tensor r = y - f.mm(w);
    return (0.5 * (kLog2Pi + var.log()) + r.square() / (2 * var)).sum(1);
  }
};
// The maximum-likelihood fits from training statistics.
LinearGaussian FitUnconditional(const Stats& s) {
  const int64_t k = s.xtx.size(0) - 1;
  const double n = s.xtx[k][k].item<double>();
  at::Tensor mean = s.xty[k] / n;
  at::Tensor w = at::zeros_like(s.xty);
  w[k] = mean;
  return {w, s.yy / n - mean.square()};
}
LinearGaussian FitLinear(const Stats& s) {
  const int64_t k = s.xtx.size(0) - 1;
  const double n = s.xtx[k][k].item<double>();
  at::Tensor w = at::linalg_solve(s.xtx, s.xty);  // [O+1, D]
  // Σ (y − fw)² = Σy² − 2·wᵀ(Xᵀy) + wᵀ(XᵀX)w, per output dimension
  at::Tensor rss = s.yy - 2 * (w * s.xty).sum(0) + (w * s.xtx.mm(w)).sum(0);
  return {w, rss / n};
}

// Mean of `nll` [N] over all rows and over the rows where `edge` [N] is false / true.
struct Means {
  double all = 0, interior = 0, edge = 0;
};
Means MeanOver(const at::Tensor& nll, const at::Tensor& edge) {
  Means m;
  m.all = nll.mean().item<double>();
  const at::Tensor inside = edge.logical_not();
  if (inside.any().item<bool>()) m.interior = nll.index({inside}).mean().item<double>();
  if (edge.any().item<bool>()) m.edge = nll.index({edge}).mean().item<double>();
  return m;
}

absl::Status Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  at::set_num_threads(1);
  c10::InferenceMode inference;

  PRL_ASSIGN_OR_RETURN(models::ModelArtifact artifact, models::ReadModelArtifact(model_path));
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<models::RealNvpFlow> flow,
                       models::RealNvpFlow::FromArtifact(artifact, at::kCPU));
  // the training run's spec is the artifact's summary (text format, then "# ..." lines)
  v1::PriorTrainingSpec spec;
  if (!google::protobuf::TextFormat::ParseFromString(artifact.info.training_summary(), &spec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": the training summary is not a PriorTrainingSpec"));
  }
  std::string path = absl::GetFlag(FLAGS_dataset);
  if (path.empty()) path = artifact.info.dataset();
  int64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed < 0) seed = spec.seed();
  PRL_ASSIGN_OR_RETURN(std::string hash, Sha256File(path));
  if (!artifact.info.dataset_hash().empty() && hash != artifact.info.dataset_hash()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path,
        " is not the file the flow was trained on (its SHA-256 differs from the artifact's)"));
  }

  // the run's split: horizon 1, its seed and validation fraction
  PRL_ASSIGN_OR_RETURN(Dataset dataset, ReadDataset(path));
  const int64_t size = dataset.size;
  const int obs_dim = dataset.obs_dim, act_dim = dataset.act_dim;
  const Rows all{
      at::from_blob(dataset.observations.data(), {size, obs_dim}, at::kFloat).to(at::kDouble),
      at::from_blob(dataset.actions.data(), {size, act_dim}, at::kFloat).to(at::kDouble)};
  learner::WindowDatasetOptions options;
  options.horizon = 1;
  options.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  options.seed = static_cast<uint64_t>(seed);
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<learner::WindowDataset> windows,
                       learner::WindowDataset::Create(std::move(dataset), options, path));
  if (windows->train_windows() + windows->validation_windows() != size) {
    return absl::InternalError("the training and validation windows do not partition the rows");
  }
  const models::WindowBatch v = windows->Validation(0, windows->validation_windows());
  const at::Tensor obs = v.obs.select(1, 0), act = v.actions.select(1, 0);  // float32
  const Rows val{obs.to(at::kDouble), act.to(at::kDouble)};
  const at::Tensor edge = (act.abs() >= models::kRealNvpMaxAbsAction).any(1);

  // the flow, on the float32 rows it would see
  PRL_ASSIGN_OR_RETURN(at::Tensor log_prob, flow->LogProb(act, obs));
  const Means flow_nll = MeanOver(-log_prob.to(at::kDouble), edge);

  // the baselines: fitted on the training rows (all minus validation), in a and in atanh(a)
  const auto [all_u, all_logdet] = Atanh(all.a);
  const auto [val_u, val_logdet] = Atanh(val.a);
  const Stats train_a = Accumulate(all.x, all.a) - Accumulate(val.x, val.a);
  const Stats train_u = Accumulate(all.x, all_u) - Accumulate(val.x, val_u);
  struct Row {
    std::string name;
    Means nll;
  };
  std::vector<Row> rows = {
      {"flow", flow_nll},
      {"gaussian", MeanOver(FitUnconditional(train_a).Nll(val.x, val.a), edge)},
      {"linear gaussian", MeanOver(FitLinear(train_a).Nll(val.x, val.a), edge)},
      {"tanh-gaussian", MeanOver(FitUnconditional(train_u).Nll(val.x, val_u) + val_logdet, edge)},
      {"linear tanh-gaussian", MeanOver(FitLinear(train_u).Nll(val.x, val_u) + val_logdet, edge)},
  };

  const int64_t n_val = val.a.size(0);
  const int64_t n_edge = edge.sum().item<int64_t>();
  std::cout << absl::StrFormat(
      "%s (seed %d) on %s: %d training and %d validation transitions (%d of them, %.1f%%, with "
      "an action on the box's edge)\n",
      model_path, seed, path, windows->train_windows(), n_val, n_edge, 100.0 * n_edge / n_val);
  std::cout << absl::StrFormat("%-22s %10s %10s %10s\n", "NLL, nats/transition", "all", "interior",
                               "edge");
  for (const Row& r : rows) {
    std::cout << absl::StrFormat("%-22s %10.3f %10.3f %10.3f\n", r.name, r.nll.all, r.nll.interior,
                                 r.nll.edge);
  }
  if (const std::string json = absl::GetFlag(FLAGS_json); !json.empty()) {
    std::ofstream file(json, std::ios::app);
    file << absl::StrFormat(
        "{\"model\": \"%s\", \"seed\": %d, \"train\": %d, \"validation\": %d, \"edge\": %d",
        model_path, seed, windows->train_windows(), n_val, n_edge);
    for (const Row& r : rows) {
      file << absl::StrFormat(", \"%s\": [%.6f, %.6f, %.6f]", r.name, r.nll.all, r.nll.interior,
                              r.nll.edge);
    }
    file << "}\n";
    if (!file.good()) return absl::InternalError(absl::StrCat("cannot write ", json));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace prl::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = prl::bench::Main();
  if (!status.ok()) {
    std::cerr << "prior_nll: " << status << "\n";
    return 1;
  }
  return 0;
}
