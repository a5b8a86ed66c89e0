#include "common/dataset_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "H5Cpp.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/hdf5_util.h"
#include "common/os_error.h"
#include "common/regular_file.h"
#include "common/status_macros.h"

namespace prl {
namespace {

// Reads one open file; every error names the file and the key. Throws H5::Exception, so it
// runs inside CallHdf5. Borrows `path` and `key`, which must outlive it; one thread, one file.
class DatasetFileReader {
 public:
  // `key` receives the key being read, for the caller's messages about HDF5 exceptions.
  DatasetFileReader(const std::string& path, const H5::Group& root, std::string& key)
      : path_(path), root_(root), key_(key) {}

  absl::StatusOr<Dataset> Read();

 private:
  // INVALID_ARGUMENT: "dataset file '<path>': key '<key>' <what>".
  absl::Status Invalid(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset file '", path_, "': key '", key_, "' ", what));
  }

  // Opens `key` (which must be a dataset of one of `classes`) and returns it with its shape,
  // which must have `rank` dimensions (any rank >= 1 if rank is 0).
  absl::StatusOr<H5::DataSet> Open(const std::string& key, std::vector<H5T_class_t> classes,
                                   int rank, std::vector<hsize_t>* shape);
  // Reads a numeric (N, ...) column as float32; checks finiteness if `finite`.
  absl::StatusOr<std::vector<float>> ReadFloats(const std::string& key, int rank, bool finite,
                                                std::vector<hsize_t>* shape);
  // Reads a (N,) bool, integer or float column as 0/1.
  absl::StatusOr<std::vector<uint8_t>> ReadFlags(const std::string& key);
  // The second dimension of a (N, d) column, which must be in [1, INT_MAX].
  absl::StatusOr<int> Width(const std::vector<hsize_t>& shape) const {
    if (shape[1] == 0 || shape[1] > std::numeric_limits<int>::max()) {
      return Invalid(absl::StrCat("has ", shape[1], " columns"));
    }
    return static_cast<int>(shape[1]);
  }
  // Checks that `key`'s first dimension is the dataset size.
  absl::Status CheckRows(const std::string& key, const std::vector<hsize_t>& shape) const;
  absl::Status ReadInfos(Dataset& dataset);
  absl::Status ReadMetadata(DatasetMetadata& metadata);

  const std::string& path_;
  const H5::Group root_;
  std::string& key_;  // the key being read
  int64_t rows_ = 0;
};

bool IsNumeric(H5T_class_t c) { return c == H5T_INTEGER || c == H5T_FLOAT; }

// The data a dataset may declare beyond what the file stores of it: up to this many bytes that
// were never written (HDF5 reads them as the fill value), and up to this many times what it
// stores (deflate, the strongest filter D4RL files use, compresses at most about 1032:1). More
// is a damaged or hostile file whose shape would have the reader allocate and fill gigabytes.
constexpr uint64_t kMaxUnstoredBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxExpansion = 1100;

absl::StatusOr<H5::DataSet> DatasetFileReader::Open(const std::string& key,
                                                    std::vector<H5T_class_t> classes, int rank,
                                                    std::vector<hsize_t>* shape) {
  key_ = key;
  if (!root_.nameExists(key)) return Invalid("is missing");
  if (root_.childObjType(key) != H5O_TYPE_DATASET) return Invalid("is not a dataset");
  H5::DataSet dataset = root_.openDataSet(key);
  const H5T_class_t type_class = dataset.getTypeClass();
  if (std::find(classes.begin(), classes.end(), type_class) == classes.end()) {
    return Invalid(absl::StrCat("has an unsupported element type (HDF5 class ", type_class,
                                "); expected a number"));
  }
  const H5::DataSpace space = dataset.getSpace();
  const int actual_rank = space.isSimple() ? space.getSimpleExtentNdims() : 0;
  if (rank == 0 ? actual_rank < 1 : actual_rank != rank) {
    return Invalid(absl::StrCat("has rank ", actual_rank, ", expected ",
                                rank == 0 ? "at least 1" : absl::StrCat(rank)));
  }
  shape->resize(actual_rank);
  space.getSimpleExtentDims(shape->data());
  // the declared size against the stored one, before anything is allocated for it
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  uint64_t bytes = dataset.getDataType().getSize();  // saturates at kMax
  if (std::find(shape->begin(), shape->end(), 0) != shape->end()) bytes = 0;
  for (hsize_t d : *shape) bytes = d != 0 && bytes > kMax / d ? kMax : bytes * d;
  const uint64_t stored = dataset.getStorageSize();
  const uint64_t allowed =
      std::max(kMaxUnstoredBytes, stored > kMax / kMaxExpansion ? kMax : stored * kMaxExpansion);
  if (bytes > allowed) {
    return Invalid(absl::StrCat("has shape [", absl::StrJoin(*shape, ", "),
                                "] but the file stores only ", stored,
                                " bytes of its data; it is damaged"));
  }
  return dataset;
}

absl::Status DatasetFileReader::CheckRows(const std::string& key,
                                          const std::vector<hsize_t>& shape) const {
  if (static_cast<int64_t>(shape[0]) == rows_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("dataset file '", path_, "': key '", key, "' has ",
                                                 shape[0], " rows but 'observations' has ", rows_));
}

absl::StatusOr<std::vector<float>> DatasetFileReader::ReadFloats(const std::string& key, int rank,
                                                                 bool finite,
                                                                 std::vector<hsize_t>* shape) {
  PRL_ASSIGN_OR_RETURN(H5::DataSet dataset, Open(key, {H5T_INTEGER, H5T_FLOAT}, rank, shape));
  size_t count = 1;
  for (hsize_t d : *shape) count *= d;
  std::vector<float> values(count);
  if (count > 0) dataset.read(values.data(), H5::PredType::NATIVE_FLOAT);
  if (finite) {
    const size_t width = count == 0 ? 1 : count / (*shape)[0];
    for (size_t i = 0; i < count; ++i) {
      if (!std::isfinite(values[i])) {
        return Invalid(absl::StrCat("holds a non-finite value (", values[i], ") at row ", i / width,
                                    ", column ", i % width));
      }
    }
  }
  return values;
}

absl::StatusOr<std::vector<uint8_t>> DatasetFileReader::ReadFlags(const std::string& key) {
  std::vector<hsize_t> shape;
  PRL_ASSIGN_OR_RETURN(H5::DataSet dataset,
                       Open(key, {H5T_INTEGER, H5T_FLOAT, H5T_ENUM, H5T_BITFIELD}, 1, &shape));
  PRL_RETURN_IF_ERROR(CheckRows(key, shape));
  std::vector<uint8_t> flags(shape[0]);
  if (shape[0] == 0) return flags;
  if (IsNumeric(dataset.getTypeClass())) {
    std::vector<double> values(shape[0]);
    dataset.read(values.data(), H5::PredType::NATIVE_DOUBLE);
    for (size_t i = 0; i < values.size(); ++i) {
      if (std::isnan(values[i])) return Invalid(absl::StrCat("is NaN at row ", i));
      flags[i] = values[i] != 0;
    }
    return flags;
  }
  // bool enum or bitfield: read the raw values unconverted; an element is true when any of
  // its bytes is non-zero, whatever its width, sign or byte order.
  const H5::DataType type = dataset.getDataType();
  const size_t width = type.getSize();
  std::vector<uint8_t> raw(shape[0] * width);
  dataset.read(raw.data(), type);
  for (size_t i = 0; i < flags.size(); ++i) {
    for (size_t b = 0; b < width; ++b) flags[i] |= raw[i * width + b] != 0;
  }
  return flags;
}

absl::Status DatasetFileReader::ReadInfos(Dataset& dataset) {
  key_ = "infos";
  if (!root_.nameExists("infos") || root_.childObjType("infos") != H5O_TYPE_GROUP) {
    return absl::OkStatus();
  }
  const H5::Group infos = root_.openGroup("infos");
  const hsize_t n = infos.getNumObjs();
  for (hsize_t i = 0; i < n; ++i) {
    const std::string name = infos.getObjnameByIdx(i);
    const std::string key = absl::StrCat("infos/", name);
    key_ = key;
    if (infos.childObjType(name) != H5O_TYPE_DATASET) continue;
    if (!IsNumeric(infos.openDataSet(name).getTypeClass())) continue;
    std::vector<hsize_t> shape;
    PRL_ASSIGN_OR_RETURN(std::vector<float> values, ReadFloats(key, 0, false, &shape));
    PRL_RETURN_IF_ERROR(CheckRows(key, shape));
    dataset.infos.push_back(
        {name, std::vector<int64_t>(shape.begin() + 1, shape.end()), std::move(values)});
  }
  return absl::OkStatus();
}

absl::Status DatasetFileReader::ReadMetadata(DatasetMetadata& metadata) {
  for (auto [name, value] : {std::pair<const char*, std::string*>{"env_spec", &metadata.env_spec},
                             {"collector", &metadata.collector},
                             {"prl_version", &metadata.prl_version}}) {
    key_ = absl::StrCat("attribute ", name);
    if (!root_.attrExists(name)) continue;
    const H5::Attribute attribute = root_.openAttribute(name);
    if (attribute.getTypeClass() != H5T_STRING ||
        attribute.getSpace().getSimpleExtentNpoints() != 1) {
      continue;  // a foreign file's attribute of the same name: not ours
    }
    attribute.read(attribute.getStrType(), *value);
  }
  key_ = "attribute seed";
  if (root_.attrExists("seed")) {
    const H5::Attribute attribute = root_.openAttribute("seed");
    if (attribute.getTypeClass() == H5T_INTEGER &&
        attribute.getSpace().getSimpleExtentNpoints() == 1) {
      attribute.read(H5::PredType::NATIVE_INT64, &metadata.seed);
    }
  }
  return absl::OkStatus();
}

// Row i's successor within its episode, or row i itself at an episode's end (see the header).
std::vector<float> DeriveNextObservations(const Dataset& d) {
  std::vector<float> next(d.observations.size());
  for (int64_t i = 0; i < d.size; ++i) {
    const bool last = d.terminals[i] != 0 || d.timeouts[i] != 0 || i + 1 == d.size;
    const float* source = &d.observations[(last ? i : i + 1) * d.obs_dim];
    std::copy(source, source + d.obs_dim, &next[i * d.obs_dim]);
  }
  return next;
}

absl::StatusOr<Dataset> DatasetFileReader::Read() {
  Dataset d;
  std::vector<hsize_t> shape;
  PRL_ASSIGN_OR_RETURN(d.observations, ReadFloats("observations", 2, true, &shape));
  rows_ = d.size = static_cast<int64_t>(shape[0]);
  PRL_ASSIGN_OR_RETURN(d.obs_dim, Width(shape));
  PRL_ASSIGN_OR_RETURN(d.actions, ReadFloats("actions", 2, true, &shape));
  PRL_RETURN_IF_ERROR(CheckRows("actions", shape));
  PRL_ASSIGN_OR_RETURN(d.act_dim, Width(shape));
  PRL_ASSIGN_OR_RETURN(d.rewards, ReadFloats("rewards", 1, true, &shape));
  PRL_RETURN_IF_ERROR(CheckRows("rewards", shape));
  PRL_ASSIGN_OR_RETURN(d.terminals, ReadFlags("terminals"));
  if (root_.nameExists("timeouts")) {
    PRL_ASSIGN_OR_RETURN(d.timeouts, ReadFlags("timeouts"));
  } else {
    d.timeouts.assign(d.size, 0);
  }
  if (root_.nameExists("next_observations")) {
    PRL_ASSIGN_OR_RETURN(d.next_observations, ReadFloats("next_observations", 2, true, &shape));
    PRL_RETURN_IF_ERROR(CheckRows("next_observations", shape));
    if (static_cast<int>(shape[1]) != d.obs_dim) {
      return Invalid(absl::StrCat("has ", shape[1], " columns but 'observations' has ", d.obs_dim));
    }
  } else {
    d.next_observations = DeriveNextObservations(d);
    d.derived_next_observations = true;
  }
  PRL_RETURN_IF_ERROR(ReadInfos(d));
  PRL_RETURN_IF_ERROR(ReadMetadata(d.metadata));
  return d;
}

}  // namespace

absl::StatusOr<Dataset> ReadDataset(const std::string& path) {
  // a regular file only: HDF5 would block opening a FIFO and scan a device for its signature
  if (absl::Status s = CheckRegularFile(path); !s.ok()) {
    if (absl::IsInvalidArgument(s)) {
      return absl::InvalidArgumentError(absl::StrCat("dataset file ", s.message()));
    }
    return OsError("cannot read dataset file", path);
  }
  std::string key;  // the key being read when HDF5 fails; empty while opening the file
  return internal::CallHdf5(
      [&]() -> absl::StatusOr<Dataset> {
        if (!H5::H5File::isHdf5(path)) {
          return absl::DataLossError(absl::StrCat("dataset file '", path, "' is not an HDF5 file"));
        }
        const H5::H5File file(path, H5F_ACC_RDONLY);
        return DatasetFileReader(path, file.openGroup("/"), key).Read();
      },
      [&](const std::string& message) -> absl::Status {
        if (key.empty()) {
          return absl::DataLossError(
              absl::StrCat("dataset file '", path, "' is damaged or not an HDF5 file: ", message));
        }
        return absl::DataLossError(
            absl::StrCat("dataset file '", path, "', key '", key, "': cannot read: ", message));
      });
}

}  // namespace prl
