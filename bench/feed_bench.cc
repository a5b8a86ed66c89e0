// How fast the replay feed (learner/replay_feed.h) hands batches to a learner on its device,
// against the limit: the same consumer loop over batches already on the device, measured in the
// same run. The consumer stands in for an update: it reads every column, runs a `--work`-sized
// product on the device and fetches one scalar to the host (the agent's statistics), so the feed
// must convert and transfer the next batch while that runs. On a CUDA device the feed runs
// twice: staging through pinned memory on its copy stream (the default) and with plain
// synchronous copies. The sample responses come from memory (a copy of a prebuilt response per
// Sample, as a gRPC client parses one), so replay's own cost is not part of it
// (bench/replay_bench.cc measures that).
//
//   bazel build -c opt //bench:feed_bench && .bazel/bin/bench/feed_bench --seconds=3
//   feed_bench --device=cuda --work=1024   # on a GPU machine (bench/learner_gpu.sh)
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ATen/ATen.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "learner/replay_feed.h"

ABSL_FLAG(std::string, device, "cpu", "Device the batches go to (cpu, cuda, cuda:N).");
ABSL_FLAG(double, seconds, 3.0, "Duration of each measured case.");
ABSL_FLAG(std::string, workloads, "cheetah,image64", "Workloads to run, comma-separated.");
ABSL_FLAG(int, batch, 256, "Rows per batch.");
ABSL_FLAG(int, work, 256,
          "Side of the square product the consumer runs per batch on the device (0: none): the "
          "stand-in for an update's device time.");
ABSL_FLAG(int, prefetch, 2, "Batches the feed keeps ready (ReplayFeedOptions::prefetch).");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");

namespace prl::learner {
namespace {

v1::NamedTensor Column(const std::string& name, v1::Tensor::DType dtype, int element_size,
                       std::vector<int64_t> shape) {
  v1::NamedTensor column;
  column.set_name(name);
  v1::Tensor* t = column.mutable_tensor();
  t->set_dtype(dtype);
  int64_t n = 1;
  for (int64_t d : shape) {
    t->add_shape(d);
    n *= d;
  }
  std::string data(n * element_size, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 % 61);
  t->set_data(std::move(data));
  return column;
}

// The workloads of bench/replay_bench.cc: a cheetah transition (42 float32) and a 64x64x3
// uint8 image transition with its action and reward.
v1::SampleResponse Response(const std::string& workload, int rows) {
  v1::SampleResponse r;
  constexpr auto kF32 = v1::Tensor::DTYPE_FLOAT32;
  if (workload == "cheetah") {
    *r.add_columns() = Column("observation", kF32, 4, {rows, 17});
    *r.add_columns() = Column("action", kF32, 4, {rows, 6});
    *r.add_columns() = Column("reward", kF32, 4, {rows});
    *r.add_columns() = Column("next_observation", kF32, 4, {rows, 17});
    *r.add_columns() = Column("discount", kF32, 4, {rows});
  } else {
    *r.add_columns() = Column("observation", v1::Tensor::DTYPE_UINT8, 1, {rows, 64, 64, 3});
    *r.add_columns() = Column("action", kF32, 4, {rows, 6});
    *r.add_columns() = Column("reward", kF32, 4, {rows});
  }
  for (int k = 0; k < rows; ++k) r.add_keys(k);
  r.set_table_size(100000);
  return r;
}

class PrebuiltSource final : public ReplaySource {
 public:
  explicit PrebuiltSource(v1::SampleResponse response) : response_(std::move(response)) {}
  absl::Status CreateTable(const v1::TableConfig&) override { return absl::OkStatus(); }
  absl::StatusOr<v1::SampleResponse> Sample(const std::string&, int, absl::Duration,
                                            double) override {
    return response_;  // a copy, as a client parses each response into a new message
  }
  absl::Status UpdatePriorities(const std::string&, const std::vector<uint64_t>&,
                                const std::vector<double>&) override {
    return absl::OkStatus();
  }
  absl::Status DeleteTable(const std::string&) override { return absl::OkStatus(); }

 private:
  const v1::SampleResponse response_;
};

// One stand-in update on `batch`: reads every column, runs the product, fetches a scalar.
class Consumer {
 public:
  Consumer(const at::Device& device, int work)
      : work_(work > 0 ? at::rand({work, work}, at::TensorOptions().device(device)) / work
                       : at::Tensor()) {}
  float Consume(const Batch& batch) {
    at::Tensor total = at::zeros({}, batch.columns.begin()->second.options().dtype(at::kFloat));
    for (const auto& [name, column] : batch.columns) total += column.sum().to(at::kFloat);
    if (work_.defined()) total += at::mm(work_, work_)[0][0];
    return total.item<float>();
  }

 private:
  const at::Tensor work_;
};

struct Result {
  std::string workload;
  std::string path;
  double batches_per_s = 0;
};

double RunLimit(const v1::SampleResponse& response, const std::string& device, int work,
                absl::Duration duration) {
  std::vector<Batch> batches;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<Batch> batch = ReplayFeed::ToBatch(response, device, /*prioritized=*/false);
    if (!batch.ok()) {
      std::fprintf(stderr, "limit: %s\n", batch.status().ToString().c_str());
      std::exit(1);
    }
    batches.push_back(*std::move(batch));
  }
  Consumer consumer(at::Device(device), work);
  for (const Batch& b : batches) consumer.Consume(b);  // warm-up
  int64_t n = 0;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) consumer.Consume(batches[n++ % batches.size()]);
  return n / absl::ToDoubleSeconds(absl::Now() - start);
}

double RunFeed(const v1::SampleResponse& response, const std::string& device, bool pinned, int work,
               int prefetch, absl::Duration duration) {
  ReplayFeedOptions options;
  v1::TableConfig table;
  table.set_name("bench");
  options.tables = {table};
  options.batch_size = response.keys_size();
  options.device = device;
  options.pinned_staging = pinned;
  options.prefetch = prefetch;
  ReplayFeed feed(std::make_unique<PrebuiltSource>(response), options);
  if (absl::Status s = feed.Start(); !s.ok()) {
    std::fprintf(stderr, "feed: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  Consumer consumer(at::Device(device), work);
  const auto next = [&feed]() {
    absl::StatusOr<std::optional<Batch>> batch = feed.Next(absl::Seconds(30));
    if (!batch.ok() || !batch->has_value()) {
      std::fprintf(stderr, "feed: no batch (%s)\n", batch.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(**batch);
  };
  for (int i = 0; i < 4; ++i) consumer.Consume(next());  // warm-up
  int64_t n = 0;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) {
    consumer.Consume(next());
    ++n;
  }
  const double rate = n / absl::ToDoubleSeconds(absl::Now() - start);
  feed.Stop();
  return rate;
}

int Main() {
  const std::string device = absl::GetFlag(FLAGS_device);
  const at::Device target(device);
  if (target.is_cuda() && !(at::hasCUDA() && at::getNumGPUs() > 0)) {
    std::fprintf(stderr, "--device=%s: this build or machine has no CUDA device\n", device.c_str());
    return 2;
  }
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const int work = absl::GetFlag(FLAGS_work);
  const int prefetch = absl::GetFlag(FLAGS_prefetch);
  std::printf("feed_bench: device %s, batch %d, consumer product %dx%d, prefetch %d, %.1f s/case\n",
              device.c_str(), absl::GetFlag(FLAGS_batch), work, work, prefetch,
              absl::ToDoubleSeconds(duration));
  std::printf("%-8s %-26s %14s %14s\n", "workload", "path", "batches/s", "of the limit");
  std::vector<Result> results;
  const std::vector<std::string> workloads =
      absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty());
  for (const std::string& workload : workloads) {
    if (workload != "cheetah" && workload != "image64") {
      std::fprintf(stderr, "--workloads: unknown workload '%s' (allowed: cheetah, image64)\n",
                   workload.c_str());
      return 2;
    }
    const v1::SampleResponse response = Response(workload, absl::GetFlag(FLAGS_batch));
    const double limit = RunLimit(response, device, work, duration);
    results.push_back({workload, "limit (batches on device)", limit});
    std::printf("%-8s %-26s %14.0f %14s\n", workload.c_str(), "limit (batches on device)", limit,
                "1.00");
    std::vector<std::pair<std::string, bool>> paths = {{"feed", true}};
    if (target.is_cuda())
      paths = {{"feed, pinned + copy stream", true}, {"feed, plain copies", false}};
    for (const auto& [name, pinned] : paths) {
      const double rate = RunFeed(response, device, pinned, work, prefetch, duration);
      results.push_back({workload, name, rate});
      std::printf("%-8s %-26s %14.0f %14.2f\n", workload.c_str(), name.c_str(), rate, rate / limit);
    }
  }
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    std::ofstream out(json);
    out << "{\"device\": \"" << device << "\", \"work\": " << work << ", \"results\": [";
    for (size_t i = 0; i < results.size(); ++i) {
      out << (i ? ", " : "")
          << absl::StrFormat("{\"workload\": \"%s\", \"path\": \"%s\", \"batches_per_s\": %.1f}",
                             results[i].workload, results[i].path, results[i].batches_per_s);
    }
    out << "]}\n";
  }
  return 0;
}

}  // namespace
}  // namespace prl::learner

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return prl::learner::Main();
}
