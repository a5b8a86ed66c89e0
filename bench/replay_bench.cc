// Replay throughput and latency, in one run: the in-process Table (the limit) against
// prl_replay's service over gRPC on loopback (a real server with its own channels per writer),
// for inserts with 1, 4 and 16 writers streaming batches (replay::InsertStream) and for
// batch-256 samples, on a cheetah-sized transition and on a 64x64x3 image transition. Prints
// each gRPC figure as a ratio of the in-process one and checks it against its target, with the
// process CPU time per item of both (client and server share the machine's cores); --json
// writes the numbers for bench/replay_vs_reverb.py, which runs the same workloads against Reverb.
//
//   bazel build -c opt //bench:replay_bench && .bazel/bin/bench/replay_bench --seconds=3
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "common/server.h"
#include "common/tensor.h"
#include "replay/allocator.h"
#include "replay/insert_batch.h"
#include "replay/replay_client.h"
#include "replay/replay_service.h"
#include "replay/shard.h"

ABSL_FLAG(double, seconds, 3.0, "Duration of each measured case.");
ABSL_FLAG(std::string, writers, "1,4,16", "Writer counts for the insert cases.");
ABSL_FLAG(int, insert_batch, 64, "Rows per streamed insert request.");
ABSL_FLAG(int, sample_batch, 256, "Items per sample.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(std::string, workloads, "cheetah,image64", "Workloads to run, comma-separated.");
ABSL_FLAG(bool, copying_writer, false,
          "gRPC writers encode each batch from views of their buffers (InsertStream::Write of an "
          "InsertBatch: one copy) instead of sending a shared request (no copy).");

namespace prl::bench {
namespace {

struct Workload {
  std::string name;
  // columns: name, dtype, shape
  std::vector<std::tuple<std::string, DType, std::vector<int64_t>>> columns;
  int64_t capacity;
};

std::vector<Workload> Workloads() {
  return {
      {"cheetah",
       {{"obs", DType::kFloat32, {17}},
        {"action", DType::kFloat32, {6}},
        {"reward", DType::kFloat32, {}},
        {"next_obs", DType::kFloat32, {17}},
        {"discount", DType::kFloat32, {}}},
       1'000'000},
      {"image64",
       {{"obs", DType::kUInt8, {64, 64, 3}},
        {"action", DType::kFloat32, {6}},
        {"reward", DType::kFloat32, {}}},
       20'000},
  };
}

v1::TableConfig TableFor(const Workload& w) {
  v1::TableConfig config;
  config.set_name(w.name);
  config.set_capacity(w.capacity);
  for (const auto& [name, dtype, shape] : w.columns) {
    v1::ColumnSpec* c = config.add_signature();
    c->set_name(name);
    c->set_dtype(DTypeToProto(dtype));
    for (int64_t d : shape) c->add_shape(d);
  }
  return config;
}

int64_t RowBytes(const Workload& w) {
  int64_t total = 0;
  for (const auto& [name, dtype, shape] : w.columns) {
    int64_t n = DTypeSize(dtype);
    for (int64_t d : shape) n *= d;
    total += n;
  }
  return total;
}

v1::InsertRequest BatchFor(const Workload& w, int rows) {
  v1::InsertRequest request;
  request.set_table(w.name);
  for (const auto& [name, dtype, shape] : w.columns) {
    std::vector<int64_t> full = {rows};
    full.insert(full.end(), shape.begin(), shape.end());
    HostTensor t = *HostTensor::Zeros(dtype, full);
    if (dtype == DType::kFloat32) {
      auto data = t.mutable_data<float>();
      for (size_t i = 0; i < data.size(); ++i) data[i] = 0.001f * static_cast<float>(i % 997);
    }
    v1::NamedTensor* c = request.add_columns();
    c->set_name(name);
    TensorToProto(std::move(t), c->mutable_tensor());
  }
  return request;
}

// CPU time this process has used, all threads together.
double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Rate {
  double items_per_second = 0;
  // Process CPU time per item (clients and server together): what the case costs on the two
  // shared cores, whatever else the machine is running.
  double cpu_us_per_item = 0;
};

// Runs `body(thread, stop)` on `threads` threads for `seconds`; returns items per second from
// the counts the bodies return.
template <typename Body>
Rate RunFor(int threads, double seconds, Body body) {
  std::atomic<bool> stop{false};
  std::vector<int64_t> counts(threads, 0);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  const absl::Time start = absl::Now();
  const double cpu_start = ProcessCpuSeconds();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { counts[t] = body(t, stop); });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = ProcessCpuSeconds() - cpu_start;
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return {static_cast<double>(total) / elapsed, 1e6 * cpu / std::max<int64_t>(total, 1)};
}

struct Latency {
  double items_per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

template <typename Call>
Latency MeasureSamples(double seconds, int batch, Call call) {
  std::vector<double> ms;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Seconds(seconds)) {
    const absl::Time t0 = absl::Now();
    call();
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(ms.begin(), ms.end());
  Latency l;
  l.items_per_second = static_cast<double>(ms.size()) * batch / elapsed;
  l.p50_ms = ms[ms.size() / 2];
  l.p99_ms = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  return l;
}

std::vector<int> ParseWriters(const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(std::stoi(s.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out;
}

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int insert_batch = absl::GetFlag(FLAGS_insert_batch);
  const int sample_batch = absl::GetFlag(FLAGS_sample_batch);
  const std::vector<int> writer_counts = ParseWriters(absl::GetFlag(FLAGS_writers));

  // one prl_replay service in this process, reached over loopback TCP, set up as prl_replay
  // sets itself up.
  if (absl::Status s = replay::KeepFreedBuffersForReuse(); !s.ok()) {
    std::fprintf(stderr, "allocator settings not applied: %s\n", s.ToString().c_str());
  }
  auto registry = std::make_shared<prometheus::Registry>();
  replay::ShardOptions shard_options;
  shard_options.limits.max_capacity = 2'000'000;
  auto shard = *replay::ReplayShard::Create(shard_options, *registry);
  replay::ReplayServiceImpl service({}, shard.get());
  ServerOptions server_options;
  server_options.service_name = "replay";
  server_options.metrics_port = -1;
  server_options.max_threads = 64;
  auto host = *ServerHost::Start(server_options, {&service}, registry);

  std::map<std::string, double> results;
  std::printf("%-34s %14s %14s %8s %-16s %s\n", "case", "in-process/s", "gRPC/s", "ratio", "target",
              "CPU us/item in-process, gRPC");
  bool all_met = true;
  const std::string selected = absl::StrCat(",", absl::GetFlag(FLAGS_workloads), ",");
  for (const Workload& w : Workloads()) {
    if (selected.find(absl::StrCat(",", w.name, ",")) == std::string::npos) continue;
    const v1::TableConfig config = TableFor(w);
    const v1::InsertRequest batch = BatchFor(w, insert_batch);
    // what gRPC writers send: the same request, shared (its large tensors are sent from where
    // they lie), or views of its buffers (encoded into a send buffer on every Write).
    const auto shared_batch = std::make_shared<const v1::InsertRequest>(batch);
    const replay::InsertBatch batch_views = replay::InsertBatch::FromProto(batch);
    const bool copying_writer = absl::GetFlag(FLAGS_copying_writer);
    const int64_t row_bytes = RowBytes(w);

    // inserts
    for (int writers : writer_counts) {
      auto local = *replay::Table::Create(config, shard_options.limits);
      const Rate in_process = RunFor(writers, seconds, [&](int, std::atomic<bool>& stop) {
        int64_t n = 0;
        while (!stop) {
          int64_t inserted;
          (void)local->Insert(batch, absl::InfiniteFuture(), nullptr, &inserted, nullptr);
          n += inserted;
        }
        return n;
      });
      (void)shard->DeleteTable(w.name);
      (void)shard->CreateTable(config);
      const Rate over_grpc = RunFor(writers, seconds, [&](int, std::atomic<bool>& stop) {
        // each writer is its own client, on its own connection, streaming batches.
        CallOptions call;
        call.timeout = absl::Seconds(seconds + 30);
        auto stream = replay::InsertStream::Open(*CreateChannel({host->address()}), call);
        int64_t n = 0;
        while (!stop &&
               (copying_writer ? stream->Write(batch_views) : stream->Write(shared_batch))) {
          n += insert_batch;
        }
        (void)stream->Finish();
        return n;
      });
      const double ratio = over_grpc.items_per_second / in_process.items_per_second;
      const bool met = ratio >= 0.40;
      all_met &= met;
      const std::string name = absl::StrCat(w.name, "/insert/writers=", writers);
      std::printf("%-34s %14.0f %14.0f %8.2f %-16s %.2f, %.2f\n", name.c_str(),
                  in_process.items_per_second, over_grpc.items_per_second, ratio,
                  met ? ">= 0.40 ok" : ">= 0.40 MISSED", in_process.cpu_us_per_item,
                  over_grpc.cpu_us_per_item);
      results[name + "/in_process"] = in_process.items_per_second;
      results[name + "/grpc"] = over_grpc.items_per_second;
      results[name + "/grpc_mb_per_s"] = over_grpc.items_per_second * row_bytes / 1e6;
      results[name + "/in_process_cpu_us"] = in_process.cpu_us_per_item;
      results[name + "/grpc_cpu_us"] = over_grpc.cpu_us_per_item;
    }

    // samples, from a full table
    auto local = *replay::Table::Create(config, shard_options.limits);
    const int64_t fill = std::min<int64_t>(w.capacity, 100'000);
    for (int64_t i = 0; i < fill; i += insert_batch) {
      int64_t inserted;
      (void)local->Insert(batch, absl::InfiniteFuture(), nullptr, &inserted, nullptr);
      (void)(*shard->GetTable(w.name))
          ->Insert(batch, absl::InfiniteFuture(), nullptr, &inserted, nullptr);
    }
    v1::SampleRequest sample;
    sample.set_table(w.name);
    sample.set_batch_size(sample_batch);
    const Latency in_process = MeasureSamples(seconds, sample_batch, [&] {
      v1::SampleResponse response;
      (void)local->Sample(sample, absl::InfiniteFuture(), nullptr, &response);
    });
    auto stub = v1::ReplayService::NewStub(*CreateChannel({host->address()}));
    const Latency over_grpc = MeasureSamples(seconds, sample_batch, [&] {
      grpc::ClientContext context;
      PrepareContext({}, &context);
      v1::SampleResponse response;
      (void)stub->Sample(&context, sample, &response);
    });
    const double ratio = over_grpc.items_per_second / in_process.items_per_second;
    const std::string name = absl::StrCat(w.name, "/sample/batch=", sample_batch);
    std::printf("%-34s %14.0f %14.0f %8.2f (p50 %.3f ms, p99 %.3f ms)\n", name.c_str(),
                in_process.items_per_second, over_grpc.items_per_second, ratio, over_grpc.p50_ms,
                over_grpc.p99_ms);
    const bool p99_met = w.name != "cheetah" || over_grpc.p99_ms < 2.0;
    if (w.name == "cheetah") {
      std::printf("%-34s %14s %14.3f %8s %s\n", (name + " p99 ms").c_str(), "", over_grpc.p99_ms,
                  "", p99_met ? "< 2 ms ok" : "< 2 ms MISSED");
    }
    all_met &= p99_met;
    results[name + "/in_process"] = in_process.items_per_second;
    results[name + "/grpc"] = over_grpc.items_per_second;
    results[name + "/grpc_p50_ms"] = over_grpc.p50_ms;
    results[name + "/grpc_p99_ms"] = over_grpc.p99_ms;
    (void)shard->DeleteTable(w.name);
  }
  host->Shutdown();

  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    std::ofstream out(json);
    out << "{\n";
    size_t i = 0;
    for (const auto& [k, v] : results) {
      out << absl::StrFormat("  \"%s\": %.6g%s\n", k, v, ++i < results.size() ? "," : "");
    }
    out << "}\n";
  }
  std::printf("%s\n", all_met ? "all targets met" : "some targets MISSED");
  return 0;
}

}  // namespace
}  // namespace prl::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return prl::bench::Main();
}
