// Offline RL datasets as HDF5 files in the D4RL layout: the in-memory types that both sides
// share. PRL's collectors write such files with DatasetWriter (common/dataset_writer.h), and
// ReadDataset (common/dataset_reader.h) loads them, or D4RL files from elsewhere, into a
// Dataset.
//
// A file PRL writes holds, for N transitions:
//   observations       (N, obs_dim) float32
//   actions            (N, act_dim) float32
//   rewards            (N,)         float32
//   terminals          (N,)         bool   (h5py's bool: an int8 enum FALSE=0, TRUE=1)
//   timeouts           (N,)         bool
//   next_observations  (N, obs_dim) float32
//   infos/<name>       (N, dims...) float32, one per InfoColumnSpec
// as chunked datasets extendible along the first axis, and root-group attributes env_spec,
// collector, prl_version and format ("prl-d4rl-1") as variable-length UTF-8 strings and seed
// as int64. h5py reads all of it back with the dtypes above (bool for terminals/timeouts, str
// for the string attributes).
//
// Files use the HDF5 1.10 file format (readable by HDF5 >= 1.10, i.e. any h5py of the last
// years), whose metadata carries checksums, and every dataset has the Fletcher-32 filter, so
// flipped bits in the data or the file structure read as DATA_LOSS instead of wrong numbers.
// (Only the string attributes' bytes, which HDF5 keeps in its unchecksummed global heap, are
// not covered.) Foreign files in older formats have no such checksums, and HDF5 itself may
// crash on some deliberately corrupted files of that kind: read files you trust.
//
// Nothing here includes HDF5, MuJoCo or LibTorch: H5Cpp.h stays inside dataset_writer.cc,
// dataset_reader.cc and hdf5_util.*, whose HDF5 errors become absl::Status; no exception
// leaves these APIs.
#ifndef PRL_COMMON_DATASET_H_
#define PRL_COMMON_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace prl {

// The value of the root attribute "format" in files DatasetWriter writes.
inline constexpr char kDatasetFormat[] = "prl-d4rl-1";

// Who made a dataset. Stored as attributes of the file's root group.
struct DatasetMetadata {
  std::string env_spec;   // text-format prl.v1.EnvSpec (may be empty for foreign files)
  std::string collector;  // e.g. "scripted:planner noise=0.1", "random"
  int64_t seed = 0;
  std::string prl_version;  // the writer fills it from common/version.h if empty
};

// An extra per-row float32 column, stored as infos/<name> with shape (N, dims...). `dims`
// may be empty for one scalar per row. Names are non-empty and contain no '/'.
struct InfoColumnSpec {
  std::string name;
  std::vector<int64_t> dims;
};

// A whole dataset in memory. Row i of a (N, d) column is values[i*d, (i+1)*d).
// A plain value: owned by whoever holds it; const methods are safe to call concurrently.
struct Dataset {
  int64_t size = 0;
  int obs_dim = 0;
  int act_dim = 0;
  std::vector<float> observations, actions, rewards, next_observations;
  std::vector<uint8_t> terminals, timeouts;  // 0/1
  // True when the file had no next_observations and ReadDataset derived them (see there).
  bool derived_next_observations = false;
  struct Info {
    std::string name;
    std::vector<int64_t> dims;  // per-row dims (the file's shape without its first axis)
    std::vector<float> values;  // size * product(dims), row-major
  };
  std::vector<Info> infos;  // in name order (HDF5 lists them so), not the writer's order
  DatasetMetadata metadata;

  // Exclusive end row of each episode, in order: i + 1 for every row i that is terminal or a
  // timeout, and then `size` if the last row is neither (an unfinished final episode).
  std::vector<int64_t> EpisodeEnds() const;

  // The info column called `name`, or null.
  const Info* FindInfo(absl::string_view name) const;
};

}  // namespace prl

#endif  // PRL_COMMON_DATASET_H_
