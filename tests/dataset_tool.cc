// Test helper for dataset_h5py_test: lets a Python/h5py script drive PRL's dataset code.
//   dataset_tool write <path>  writes the fixed dataset described below with DatasetWriter
//   dataset_tool read <path>   reads any dataset file with ReadDataset and prints it as JSON
// Errors go to stderr with exit status 1.
//
// The written dataset (every value exact in float32, so the script can recompute it):
//   50 rows, obs_dim 4, act_dim 2, chunk_rows 16, gzip level 1
//   observations[i][j] = i + j / 8        next_observations[i][j] = observations[i][j] + 1
//   actions[i][j] = (j - i) / 4           rewards[i] = i / 2 - 1
//   terminals[i] = i % 10 == 9            timeouts[i] = i % 13 == 12 and not terminals[i]
//   infos/goal (2):   10 i + j            infos/grid (2, 3): -(6 i + j)
//   env_spec 'domain: "point_maze"\n', collector "random", seed 42, prl_version default
#include <cstdio>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/dataset_reader.h"
#include "common/dataset_writer.h"

namespace prl {
namespace {

constexpr int kRows = 50;

absl::Status Write(const std::string& path) {
  DatasetWriterOptions options;
  options.obs_dim = 4;
  options.act_dim = 2;
  options.infos = {{"goal", {2}}, {"grid", {2, 3}}};
  options.metadata.env_spec = "domain: \"point_maze\"\n";
  options.metadata.collector = "random";
  options.metadata.seed = 42;
  options.chunk_rows = 16;
  options.compression_level = 1;
  auto writer = DatasetWriter::Create(path, options);
  if (!writer.ok()) return writer.status();
  for (int i = 0; i < kRows; ++i) {
    std::vector<float> obs(4), next(4), act(2), goal(2), grid(6);
    for (int j = 0; j < 4; ++j) obs[j] = i + j / 8.0f;
    for (int j = 0; j < 4; ++j) next[j] = obs[j] + 1;
    for (int j = 0; j < 2; ++j) act[j] = (j - i) / 4.0f;
    for (int j = 0; j < 2; ++j) goal[j] = 10.0f * i + j;
    for (int j = 0; j < 6; ++j) grid[j] = -(6.0f * i + j);
    TransitionRow row;
    row.observation = obs;
    row.action = act;
    row.next_observation = next;
    row.reward = i / 2.0f - 1;
    row.terminal = i % 10 == 9;
    row.timeout = i % 13 == 12 && !row.terminal;
    row.infos = {goal, grid};
    if (absl::Status s = (*writer)->Append(row); !s.ok()) return s;
  }
  return (*writer)->Close();
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (c < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

template <typename T>
std::string JsonArray(const std::vector<T>& values) {
  return absl::StrCat("[",
                      absl::StrJoin(values, ",",
                                    [](std::string* out, T v) {
                                      if constexpr (std::is_integral_v<T>) {
                                        absl::StrAppend(out, static_cast<int64_t>(v));
                                      } else {  // %.9g round-trips float32
                                        absl::StrAppend(out, absl::StrFormat("%.9g", v));
                                      }
                                    }),
                      "]");
}

void PrintJson(const Dataset& d) {
  std::vector<std::string> infos;
  for (const Dataset::Info& info : d.infos) {
    infos.push_back(absl::StrCat(JsonString(info.name), ":{\"dims\":", JsonArray(info.dims),
                                 ",\"values\":", JsonArray(info.values), "}"));
  }
  std::cout << "{\"size\":" << d.size << ",\"obs_dim\":" << d.obs_dim
            << ",\"act_dim\":" << d.act_dim
            << ",\"derived_next_observations\":" << (d.derived_next_observations ? "true" : "false")
            << ",\"observations\":" << JsonArray(d.observations)
            << ",\"actions\":" << JsonArray(d.actions) << ",\"rewards\":" << JsonArray(d.rewards)
            << ",\"next_observations\":" << JsonArray(d.next_observations)
            << ",\"terminals\":" << JsonArray(d.terminals)
            << ",\"timeouts\":" << JsonArray(d.timeouts)
            << ",\"episode_ends\":" << JsonArray(d.EpisodeEnds()) << ",\"infos\":{"
            << absl::StrJoin(infos, ",")
            << "},\"metadata\":{\"env_spec\":" << JsonString(d.metadata.env_spec)
            << ",\"collector\":" << JsonString(d.metadata.collector)
            << ",\"seed\":" << d.metadata.seed
            << ",\"prl_version\":" << JsonString(d.metadata.prl_version) << "}}\n";
}

int Main(int argc, char** argv) {
  const std::string mode = argc == 3 ? argv[1] : "";
  if (mode != "write" && mode != "read") {
    std::cerr << "usage: dataset_tool write|read <path>\n";
    return 2;
  }
  if (mode == "write") {
    const absl::Status status = Write(argv[2]);
    if (!status.ok()) std::cerr << status << "\n";
    return status.ok() ? 0 : 1;
  }
  const absl::StatusOr<Dataset> dataset = ReadDataset(argv[2]);
  if (!dataset.ok()) {
    std::cerr << dataset.status() << "\n";
    return 1;
  }
  PrintJson(*dataset);
  return 0;
}

}  // namespace
}  // namespace prl

int main(int argc, char** argv) { return prl::Main(argc, argv); }
