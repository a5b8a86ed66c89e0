#include "common/dataset.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <utility>

#include "H5Cpp.h"
#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/os_error.h"
#include "common/status_macros.h"
#include "common/version.h"

namespace prl {
namespace {

// Every HDF5 call in this file holds this lock: the C library is built thread-safe, but the
// C++ wrappers keep process-wide state of their own.
ABSL_CONST_INIT absl::Mutex hdf5_mutex(absl::kConstInit);

// HDF5 refuses chunks of 4 GiB or more; the writer keeps every chunk (and so every row) of
// every column under this.
constexpr int64_t kMaxChunkBytes = int64_t{1} << 31;

// ---------------------------------------------------------------------------------------------
// errors

herr_t CollectErrorDescription(unsigned /*n*/, const H5E_error2_t* error, void* data) {
  auto* descriptions = static_cast<std::vector<std::string>*>(data);
  if (error->desc != nullptr && error->desc[0] != '\0') descriptions->push_back(error->desc);
  return 0;
}

// The exception's message plus the most specific entry of HDF5's error stack (e.g.
// "truncated file: eof = 800, ..."), which says far more than the C++ wrapper's message.
std::string Hdf5Message(const H5::Exception& e) {
  std::vector<std::string> descriptions;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectErrorDescription, &descriptions);
  std::string message = e.getDetailMsg();
  if (!descriptions.empty()) absl::StrAppend(&message, ": ", descriptions.front());
  return message;
}

// Runs `body` (which uses HDF5) under the HDF5 lock with automatic error printing off, turning
// HDF5 and other exceptions into a Status made by `on_hdf5_error`.
template <typename Body, typename OnError>
auto CallHdf5(Body body, OnError on_hdf5_error) -> decltype(body()) {
  absl::MutexLock lock(&hdf5_mutex);
  try {
    H5::Exception::dontPrint();  // per thread in a thread-safe HDF5 build
    return body();
  } catch (const H5::Exception& e) {
    return on_hdf5_error(Hdf5Message(e));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory reading or writing an HDF5 file");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  }
}

// ---------------------------------------------------------------------------------------------
// writer helpers

// h5py's representation of numpy bool: an int8 enum {FALSE = 0, TRUE = 1}.
H5::EnumType BoolType() {
  const H5::IntType base(H5::PredType::NATIVE_INT8);
  H5::EnumType type(base);
  int8_t false_value = 0, true_value = 1;  // insert() takes void*
  type.insert("FALSE", &false_value);
  type.insert("TRUE", &true_value);
  return type;
}

// A chunked dataset of shape (0, row_dims...) extendible along its first axis.
H5::DataSet CreateColumn(const H5::Group& group, const std::string& name,
                         const std::vector<int64_t>& row_dims, const H5::DataType& type,
                         const DatasetWriterOptions& options) {
  std::vector<hsize_t> dims = {0}, max_dims = {H5S_UNLIMITED};
  std::vector<hsize_t> chunk = {static_cast<hsize_t>(options.chunk_rows)};
  for (int64_t d : row_dims) {
    dims.push_back(static_cast<hsize_t>(d));
    max_dims.push_back(static_cast<hsize_t>(d));
    chunk.push_back(static_cast<hsize_t>(d));
  }
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data(), max_dims.data());
  H5::DSetCreatPropList properties;
  properties.setChunk(static_cast<int>(chunk.size()), chunk.data());
  properties.setFletcher32();  // a checksum per chunk: flipped bits read as DATA_LOSS
  if (options.compression_level > 0) {
    properties.setShuffle();
    properties.setDeflate(options.compression_level);
  }
  return group.createDataSet(name, type, space, properties);
}

// Grows `dataset` by `n` rows and writes them from `data` (in `memory_type`).
void AppendRows(const H5::DataSet& dataset, const H5::DataType& memory_type, const void* data,
                hsize_t start, hsize_t n) {
  H5::DataSpace space = dataset.getSpace();
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(rank);
  space.getSimpleExtentDims(dims.data());
  dims[0] = start + n;
  dataset.extend(dims.data());
  H5::DataSpace file_space = dataset.getSpace();
  std::vector<hsize_t> offset(rank, 0), count = dims;
  offset[0] = start;
  count[0] = n;
  file_space.selectHyperslab(H5S_SELECT_SET, count.data(), offset.data());
  H5::DataSpace memory_space(rank, count.data());
  dataset.write(data, memory_type, memory_space, file_space);
}

void WriteStringAttribute(const H5::Group& group, const char* name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  H5::Attribute attribute = group.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  attribute.write(type, value);
}

void WriteMetadata(const H5::Group& root, const DatasetMetadata& metadata) {
  WriteStringAttribute(root, "env_spec", metadata.env_spec);
  WriteStringAttribute(root, "collector", metadata.collector);
  WriteStringAttribute(root, "prl_version",
                       metadata.prl_version.empty() ? kVersion : metadata.prl_version);
  WriteStringAttribute(root, "format", kDatasetFormat);
  H5::Attribute seed =
      root.createAttribute("seed", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
  seed.write(H5::PredType::NATIVE_INT64, &metadata.seed);
}

// Floats per row of a column with per-row `dims`, or an error naming `field`.
absl::StatusOr<int64_t> RowSize(const std::vector<int64_t>& dims, int64_t chunk_rows,
                                const std::string& field) {
  int64_t size = 1;
  for (int64_t d : dims) {
    if (d <= 0) return absl::InvalidArgumentError(absl::StrCat(field, " must be > 0, got ", d));
    if (d > kMaxChunkBytes / 4 / size) {
      return absl::InvalidArgumentError(absl::StrCat(field, " describe a row over 2 GiB"));
    }
    size *= d;
  }
  if (chunk_rows > kMaxChunkBytes / 4 / size) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_rows ", chunk_rows, " makes chunks over 2 GiB for ", field));
  }
  return size;
}

// Checks the options; returns the row size of each info column.
absl::StatusOr<std::vector<int64_t>> ValidateOptions(const DatasetWriterOptions& options) {
  if (options.obs_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("obs_dim must be > 0, got ", options.obs_dim));
  }
  if (options.act_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("act_dim must be > 0, got ", options.act_dim));
  }
  if (options.chunk_rows <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_rows must be > 0, got ", options.chunk_rows));
  }
  if (options.compression_level < 0 || options.compression_level > 9) {
    return absl::InvalidArgumentError(
        absl::StrCat("compression_level must be in 0-9, got ", options.compression_level));
  }
  PRL_RETURN_IF_ERROR(RowSize({options.obs_dim}, options.chunk_rows, "obs_dim").status());
  PRL_RETURN_IF_ERROR(RowSize({options.act_dim}, options.chunk_rows, "act_dim").status());
  const DatasetMetadata& m = options.metadata;
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"metadata.env_spec", &m.env_spec},
        {"metadata.collector", &m.collector},
        {"metadata.prl_version", &m.prl_version}}) {
    if (value->find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL character"));
    }
  }
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < options.infos.size(); ++i) {
    const std::string& name = options.infos[i].name;
    const std::string field = absl::StrCat("infos[", i, "]");
    if (name.empty() || name == "." || name.find_first_of(std::string("/\0", 2)) != name.npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name '", name, "' must be non-empty, not '.', without '/'"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (options.infos[j].name == name) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".name '", name, "' repeats infos[", j, "].name"));
      }
    }
    PRL_ASSIGN_OR_RETURN(int64_t size, RowSize(options.infos[i].dims, options.chunk_rows,
                                               absl::StrCat(field, ".dims")));
    sizes.push_back(size);
  }
  return sizes;
}

absl::Status CheckRowValues(absl::Span<const float> values, int64_t expected,
                            absl::string_view key) {
  if (static_cast<int64_t>(values.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " has ", values.size(), " values, expected ", expected));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, "[", i, "] is ", values[i], "; values must be finite"));
    }
  }
  return absl::OkStatus();
}

std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(path, ".tmp.", getpid(), ".", counter.fetch_add(1));
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return OsError("cannot open", path);
  const int rc = fsync(fd);
  close(fd);
  if (rc != 0) return OsError("cannot fsync", path);
  return absl::OkStatus();
}

// Renames `from` to `to` unless `to` exists (ALREADY_EXISTS), atomically where the file
// system supports RENAME_NOREPLACE.
absl::Status RenameNoReplace(const std::string& from, const std::string& to) {
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS) return OsError("cannot rename onto", to);
  struct stat st;
  if (stat(to.c_str(), &st) == 0) return absl::AlreadyExistsError(absl::StrCat(to, " exists"));
  if (rename(from.c_str(), to.c_str()) != 0) return OsError("cannot rename onto", to);
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DatasetWriter

struct DatasetWriter::File {
  H5::H5File file;
  H5::DataSet observations, actions, rewards, terminals, timeouts, next_observations;
  std::vector<H5::DataSet> infos;
};

DatasetWriter::DatasetWriter(std::string path, std::string temp_path, DatasetWriterOptions options,
                             std::unique_ptr<File> file)
    : path_(std::move(path)),
      temp_path_(std::move(temp_path)),
      options_(std::move(options)),
      file_(std::move(file)),
      infos_(options_.infos.size()) {}

absl::StatusOr<std::unique_ptr<DatasetWriter>> DatasetWriter::Create(const std::string& path,
                                                                     DatasetWriterOptions options) {
  PRL_ASSIGN_OR_RETURN(std::vector<int64_t> info_sizes, ValidateOptions(options));
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat("dataset file '", path, "' already exists"));
  }
  const std::string dir = DirName(path);
  if (stat(dir.c_str(), &st) != 0) return OsError("cannot write into directory", dir);
  std::string temp_path = TempPathFor(path);
  auto file = std::make_unique<File>();
  const absl::Status created = CallHdf5(
      [&]() -> absl::Status {
        // the HDF5 1.10 file format, whose metadata has checksums (see the header)
        H5::FileAccPropList access;
        access.setLibverBounds(H5F_LIBVER_V110, H5F_LIBVER_V110);
        file->file = H5::H5File(temp_path, H5F_ACC_EXCL, H5::FileCreatPropList::DEFAULT, access);
        const H5::Group root = file->file.openGroup("/");
        const H5::FloatType f32(H5::PredType::IEEE_F32LE);
        const H5::EnumType boolean = BoolType();
        file->observations = CreateColumn(root, "observations", {options.obs_dim}, f32, options);
        file->actions = CreateColumn(root, "actions", {options.act_dim}, f32, options);
        file->rewards = CreateColumn(root, "rewards", {}, f32, options);
        file->terminals = CreateColumn(root, "terminals", {}, boolean, options);
        file->timeouts = CreateColumn(root, "timeouts", {}, boolean, options);
        file->next_observations =
            CreateColumn(root, "next_observations", {options.obs_dim}, f32, options);
        if (!options.infos.empty()) {
          const H5::Group infos = root.createGroup("infos");
          for (const InfoColumnSpec& info : options.infos) {
            file->infos.push_back(CreateColumn(infos, info.name, info.dims, f32, options));
          }
        }
        WriteMetadata(root, options.metadata);
        return absl::OkStatus();
      },
      [&](const std::string& message) {
        return absl::InternalError(
            absl::StrCat("cannot create dataset file '", temp_path, "': ", message));
      });
  if (!created.ok()) {
    CallHdf5(
        [&] {
          file.reset();
          return absl::OkStatus();
        },
        [](const std::string&) { return absl::OkStatus(); })
        .IgnoreError();  // the file is removed anyway
    unlink(temp_path.c_str());
    return created;
  }
  auto writer = std::unique_ptr<DatasetWriter>(
      new DatasetWriter(path, std::move(temp_path), std::move(options), std::move(file)));
  writer->info_sizes_ = std::move(info_sizes);
  return writer;
}

DatasetWriter::~DatasetWriter() {
  if (file_ != nullptr) {
    CallHdf5(
        [&] {
          file_.reset();  // closes the datasets and the file
          return absl::OkStatus();
        },
        [](const std::string&) { return absl::OkStatus(); })
        .IgnoreError();  // the temporary file is removed anyway
  }
  if (!closed_ || !status_.ok()) unlink(temp_path_.c_str());
}

absl::Status DatasetWriter::Append(const TransitionRow& row) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  PRL_RETURN_IF_ERROR(status_);
  PRL_RETURN_IF_ERROR(CheckRowValues(row.observation, options_.obs_dim, "observation"));
  PRL_RETURN_IF_ERROR(CheckRowValues(row.action, options_.act_dim, "action"));
  PRL_RETURN_IF_ERROR(CheckRowValues(row.next_observation, options_.obs_dim, "next_observation"));
  PRL_RETURN_IF_ERROR(CheckRowValues({&row.reward, 1}, 1, "reward"));
  if (row.infos.size() != options_.infos.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("infos has ", row.infos.size(), " columns, expected ", options_.infos.size()));
  }
  for (size_t i = 0; i < row.infos.size(); ++i) {
    PRL_RETURN_IF_ERROR(CheckRowValues(row.infos[i], info_sizes_[i],
                                       absl::StrCat("infos/", options_.infos[i].name)));
  }
  observations_.insert(observations_.end(), row.observation.begin(), row.observation.end());
  actions_.insert(actions_.end(), row.action.begin(), row.action.end());
  next_observations_.insert(next_observations_.end(), row.next_observation.begin(),
                            row.next_observation.end());
  rewards_.push_back(row.reward);
  terminals_.push_back(row.terminal ? 1 : 0);
  timeouts_.push_back(row.timeout ? 1 : 0);
  for (size_t i = 0; i < row.infos.size(); ++i) {
    infos_[i].insert(infos_[i].end(), row.infos[i].begin(), row.infos[i].end());
  }
  ++rows_;
  if (rows_ - flushed_rows_ >= options_.chunk_rows) return Flush();
  return absl::OkStatus();
}

absl::Status DatasetWriter::Flush() {
  const hsize_t start = static_cast<hsize_t>(flushed_rows_);
  const hsize_t n = static_cast<hsize_t>(rows_ - flushed_rows_);
  if (n == 0) return absl::OkStatus();
  status_ = CallHdf5(
      [&] {
        const H5::DataType& f32 = H5::PredType::NATIVE_FLOAT;
        const H5::EnumType boolean = BoolType();
        AppendRows(file_->observations, f32, observations_.data(), start, n);
        AppendRows(file_->actions, f32, actions_.data(), start, n);
        AppendRows(file_->rewards, f32, rewards_.data(), start, n);
        AppendRows(file_->terminals, boolean, terminals_.data(), start, n);
        AppendRows(file_->timeouts, boolean, timeouts_.data(), start, n);
        AppendRows(file_->next_observations, f32, next_observations_.data(), start, n);
        for (size_t i = 0; i < infos_.size(); ++i) {
          AppendRows(file_->infos[i], f32, infos_[i].data(), start, n);
        }
        return absl::OkStatus();
      },
      [&](const std::string& message) {
        return absl::InternalError(
            absl::StrCat("cannot write dataset file '", temp_path_, "': ", message));
      });
  PRL_RETURN_IF_ERROR(status_);
  flushed_rows_ = rows_;
  for (auto* column : {&observations_, &actions_, &rewards_, &next_observations_}) {
    column->clear();
  }
  terminals_.clear();
  timeouts_.clear();
  for (auto& column : infos_) column.clear();
  return absl::OkStatus();
}

absl::Status DatasetWriter::Close() {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  closed_ = true;
  status_ = Flush();
  PRL_RETURN_IF_ERROR(status_);
  status_ = CallHdf5(
      [&] {
        file_->file.close();
        file_.reset();
        return absl::OkStatus();
      },
      [&](const std::string& message) {
        return absl::InternalError(
            absl::StrCat("cannot close dataset file '", temp_path_, "': ", message));
      });
  PRL_RETURN_IF_ERROR(status_);
  status_ = FsyncPath(temp_path_, O_RDONLY);
  if (status_.ok()) status_ = RenameNoReplace(temp_path_, path_);
  PRL_RETURN_IF_ERROR(status_);
  return FsyncPath(DirName(path_), O_RDONLY | O_DIRECTORY);
}

// ---------------------------------------------------------------------------------------------
// Dataset

std::vector<int64_t> Dataset::EpisodeEnds() const {
  std::vector<int64_t> ends;
  for (int64_t i = 0; i < size; ++i) {
    if (terminals[i] != 0 || timeouts[i] != 0) ends.push_back(i + 1);
  }
  if (size > 0 && (ends.empty() || ends.back() != size)) ends.push_back(size);
  return ends;
}

const Dataset::Info* Dataset::FindInfo(absl::string_view name) const {
  for (const Info& info : infos) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// reader

namespace {

// Reads one open file; every error names the file and the key. Throws H5::Exception.
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
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return OsError("cannot read dataset file", path);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("dataset file '", path, "' is a directory"));
  }
  std::string key;  // the key being read when HDF5 fails; empty while opening the file
  return CallHdf5(
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
