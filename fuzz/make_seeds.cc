// Writes the seed corpora of PRL's fuzz targets (fuzz/corpus/<target>/) with PRL's own
// writers, so every seed is a real input: serialized InsertRequests as clients send them,
// tensors, checksummed files and HDF5 datasets. (The spec target's seeds are the example
// specs, copied by fuzz/make_seeds.sh.)
//
//   bazel run //fuzz:make_seeds -- "$PWD/fuzz/corpus"
//
// Overwrites the files it writes; leaves others alone. Exits 1 on any error.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/checksummed_file.h"
#include "common/dataset_writer.h"
#include "common/tensor.h"
#include "fuzz/temp_file.h"
#include "proto/replay.pb.h"
#include "proto/tensor.pb.h"
#include "replay/insert_batch.h"

namespace prl::fuzz {
namespace {

absl::Status MakeDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("cannot create ", dir));
  }
  return absl::OkStatus();
}

std::string Bytes(const void* data, size_t size) {
  return std::string(static_cast<const char*>(data), size);
}

v1::Tensor MakeTensor(DType dtype, const std::vector<int64_t>& shape, std::string data) {
  v1::Tensor tensor;
  tensor.set_dtype(DTypeToProto(dtype));
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_data(std::move(data));
  return tensor;
}

std::string Floats(std::vector<float> values) {
  return Bytes(values.data(), values.size() * sizeof(float));
}

absl::Status WriteTensors(const std::string& dir) {
  const std::vector<int64_t> ids = {7, -1, 1LL << 40, 0};
  const std::vector<std::pair<std::string, v1::Tensor>> tensors = {
      {"float32_2x3", MakeTensor(DType::kFloat32, {2, 3}, Floats({0, 1, -2.5f, 3, 1e-3f, 6}))},
      {"float32_scalar", MakeTensor(DType::kFloat32, {}, Floats({0.5f}))},
      {"float32_nan",
       MakeTensor(DType::kFloat32, {2}, Floats({1, std::numeric_limits<float>::quiet_NaN()}))},
      {"float32_empty_0x3", MakeTensor(DType::kFloat32, {0, 3}, "")},
      {"int64_4", MakeTensor(DType::kInt64, {4}, Bytes(ids.data(), 8 * ids.size()))},
      {"uint8_2x2x2",
       MakeTensor(DType::kUInt8, {2, 2, 2}, std::string("\x01\x02\x03\x04\xfd\xfe\xff\x00", 8))},
  };
  for (const auto& [name, tensor] : tensors) {
    WriteFileOrDie(absl::StrCat(dir, "/", name), tensor.SerializeAsString());
  }
  return absl::OkStatus();
}

absl::Status WriteInsertRequests(const std::string& dir) {
  // a transition batch as actors send it: 2 rows of obs (3), action (2), reward, done, step.
  v1::InsertRequest transitions;
  transitions.set_table("transitions");
  auto add = [&transitions](const std::string& name, v1::Tensor tensor) {
    v1::NamedTensor* column = transitions.add_columns();
    column->set_name(name);
    *column->mutable_tensor() = std::move(tensor);
  };
  const std::vector<int64_t> steps = {41, 42};
  add("observation", MakeTensor(DType::kFloat32, {2, 3}, Floats({0.1f, 0.2f, 0.3f, 1, 2, 3})));
  add("action", MakeTensor(DType::kFloat32, {2, 2}, Floats({-1, 1, 0.5f, -0.5f})));
  add("reward", MakeTensor(DType::kFloat32, {2}, Floats({1, -0.25f})));
  add("done", MakeTensor(DType::kUInt8, {2}, std::string("\x00\x01", 2)));
  add("step", MakeTensor(DType::kInt64, {2}, Bytes(steps.data(), 16)));
  WriteFileOrDie(dir + "/transitions", transitions.SerializeAsString());

  v1::InsertRequest prioritized = transitions;
  prioritized.add_priorities(1.0);
  prioritized.add_priorities(0.25);
  prioritized.set_return_keys(true);
  prioritized.set_max_wait_ms(250);
  WriteFileOrDie(dir + "/prioritized", prioritized.SerializeAsString());

  // the client's own encoder, from a batch whose data lies in pieces.
  const std::string obs = Floats({1, 2, 3, 4, 5, 6});
  replay::InsertBatch batch;
  batch.table = "images";
  batch.columns.push_back({"pixels", v1::Tensor::DTYPE_UINT8, {1, 2, 3}, {}});
  batch.columns[0].data.Append("\x10\x20\x30");
  batch.columns[0].data.Append("\x40\x50\x60");
  batch.columns.push_back({"obs", v1::Tensor::DTYPE_FLOAT32, {1, 6}, replay::ScatteredBytes(obs)});
  std::string encoded(replay::EncodedInsertRequestSize(batch), '\0');
  replay::EncodeInsertRequest(batch, encoded.data());
  WriteFileOrDie(dir + "/encoded_images", encoded);

  // a request with a field this build does not know (a newer client), and an empty one.
  // (fields 100, a varint, and 111, two bytes, appended)
  WriteFileOrDie(dir + "/unknown_fields",
                 transitions.SerializeAsString() + std::string("\xa0\x06\x07\xfa\x06\x02hi", 8));
  WriteFileOrDie(dir + "/empty", "");
  return absl::OkStatus();
}

absl::Status WriteChecksummedFiles(const std::string& dir) {
  v1::InsertRequest payload;
  payload.set_table("checkpointed");
  for (const auto& [name, contents] : std::vector<std::pair<std::string, std::string>>{
           {"empty_payload", ""},
           {"text_payload", "a checksummed file\n"},
           {"proto_payload", payload.SerializeAsString()},
           {"binary_payload", std::string("\x00\xff\x10PRLFILE\x00\x01", 12)}}) {
    if (absl::Status s = WriteChecksummedFile(absl::StrCat(dir, "/", name), contents); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// A small dataset: `rows` rows, obs_dim 2, act_dim 1, one info column.
absl::Status WriteDataset(const std::string& path, int rows, int compression_level) {
  DatasetWriterOptions options;
  options.obs_dim = 2;
  options.act_dim = 1;
  options.infos = {{"goal", {2}}};
  options.metadata.env_spec = "domain: \"point_maze\"\n";
  options.metadata.collector = "random";
  options.metadata.seed = 7;
  options.chunk_rows = 4;
  options.compression_level = compression_level;
  std::remove(path.c_str());
  auto writer = DatasetWriter::Create(path, options);
  if (!writer.ok()) return writer.status();
  for (int i = 0; i < rows; ++i) {
    const std::vector<float> obs = {static_cast<float>(i), 0.5f * i};
    const std::vector<float> next = {i + 1.0f, 0.5f * (i + 1)};
    const std::vector<float> action = {i % 2 == 0 ? 1.0f : -1.0f};
    const std::vector<float> goal = {3, 4};
    TransitionRow row;
    row.observation = obs;
    row.action = action;
    row.next_observation = next;
    row.reward = i == rows - 1 ? 1.0f : 0.0f;
    row.terminal = i == rows - 1;
    row.timeout = i == 2;
    row.infos = {goal};
    if (absl::Status s = (*writer)->Append(row); !s.ok()) return s;
  }
  return (*writer)->Close();
}

// Layout descriptions for dataset_fuzzer's described files (see there): 4 header bytes (rows,
// two widths, attribute bits), 6 bytes per key (presence and type, rank, three dimensions,
// storage), then the values.
absl::Status WriteDatasetLayouts(const std::string& dir) {
  constexpr size_t kLayoutBytes = 4 + 8 * 6;
  std::string values;
  for (int i = 0; i < 64; ++i) {
    const float v = 0.25f * i - 3;
    values += Bytes(&v, sizeof(v));
  }
  // 5 rows, obs_dim 3, act_dim 2, the four required keys in natural form, no attributes
  const std::string natural =
      std::string("\x05\x02\x01\x00", 4) + std::string(kLayoutBytes - 4, '\0');
  WriteFileOrDie(dir + "/layout_natural", natural + values);
  // every key, chunked and compressed, and every attribute
  std::string all("\x07\x01\x00\x3d", 4);
  for (int k = 0; k < 8; ++k) {
    all += std::string(k < 4 ? "\x00" : "\x80", 1) + std::string(4, '\0') + "\x03";
  }
  WriteFileOrDie(dir + "/layout_all_keys", all + values);
  // other element types: float64 observations, int8 actions, big-endian int32 rewards,
  // bitfield terminals, uint8 timeouts
  std::string types("\x04\x01\x01\x08", 4);
  for (const char type : {'\x02', '\x03', '\x05', '\x08', '\x84'}) {
    types += std::string(1, type) + std::string(5, '\0');
  }
  WriteFileOrDie(dir + "/layout_types", types + values + values);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. \"$PWD/fuzz/corpus\")\n", argv[0]);
    return 1;
  }
  const std::string root = argv[1];
  for (const char* target : {"", "/tensor", "/insert_request", "/checksummed_file", "/dataset"}) {
    if (absl::Status s = MakeDir(root + target); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  for (const absl::Status& s :
       {WriteTensors(root + "/tensor"), WriteInsertRequests(root + "/insert_request"),
        WriteChecksummedFiles(root + "/checksummed_file"),
        WriteDataset(root + "/dataset/five_rows.hdf5", 5, 0),
        WriteDataset(root + "/dataset/nine_rows_gzip.hdf5", 9, 1),
        WriteDatasetLayouts(root + "/dataset")}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}

}  // namespace
}  // namespace prl::fuzz

int main(int argc, char** argv) { return prl::fuzz::Main(argc, argv); }
