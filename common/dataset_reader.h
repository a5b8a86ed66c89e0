// ReadDataset: loads an HDF5 dataset file in the D4RL layout (PRL's own, which
// common/dataset.h describes, or a D4RL file from elsewhere) into a Dataset.
//
// Nothing here includes HDF5, MuJoCo or LibTorch; H5Cpp.h stays inside dataset_reader.cc.
// HDF5 errors become absl::Status; no exception leaves this API.
#ifndef PRL_COMMON_DATASET_READER_H_
#define PRL_COMMON_DATASET_READER_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/dataset.h"

namespace prl {

// Reads a dataset file: PRL's own, or a D4RL file from elsewhere.
// - observations, actions, rewards, next_observations and infos of any integer or float type
//   become float32; terminals and timeouts may be bool (enum), integer or float (non-zero is
//   true). Shapes: observations/actions/next_observations (N, d) with d > 0, rewards,
//   terminals and timeouts (N,).
// - Missing timeouts: all false. Missing metadata attributes: defaults (empty, seed 0).
// - Missing next_observations: derived, and derived_next_observations is set. Row i gets
//   observations[i + 1] when row i is neither terminal nor a timeout and is not the last
//   row; otherwise (an episode's last row, whose successor the file does not hold) it gets
//   its own observation, observations[i]. That is harmless for terminal rows (bootstrapping
//   is masked) but wrong for timeout rows and an unfinished last row: learners that
//   bootstrap should skip those rows when derived_next_observations is true.
// - infos/<name>: numeric datasets with N rows are read; non-numeric ones and subgroups are
//   skipped; a missing infos group is fine. Info values are not checked for finiteness.
// - Other top-level keys are ignored.
// Errors, naming the file and the key: NOT_FOUND if the file does not exist; DATA_LOSS if it
// is not an HDF5 file, is truncated or HDF5 cannot read it; INVALID_ARGUMENT for a missing
// observations/actions/rewards/terminals, a key that is not a numeric dataset, a wrong rank,
// row counts that disagree (naming both keys and counts), non-finite values in
// observations, actions, rewards or next_observations, NaN terminals/timeouts, a dataset whose
// shape claims far more data than the file stores of it (over 1 MiB never written, or more than
// 1100 times what it stores: more than gzip compresses; a damaged file), or a path that is a
// directory.
// Thread-safe (HDF5 work of all readers and writers in the process takes turns on one lock).
absl::StatusOr<Dataset> ReadDataset(const std::string& path);

}  // namespace prl

#endif  // PRL_COMMON_DATASET_READER_H_
