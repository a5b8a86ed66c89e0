#include "common/dataset_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <utility>

#include "H5Cpp.h"
#include "absl/strings/str_cat.h"
#include "common/hdf5_util.h"
#include "common/os_error.h"
#include "common/status_macros.h"
#include "common/temp_files.h"
#include "common/version.h"

namespace prl {
namespace {

using internal::BoolType;
using internal::CallHdf5;

// HDF5 refuses chunks of 4 GiB or more; the writer keeps every chunk (and so every row) of
// every column under this.
constexpr int64_t kMaxChunkBytes = int64_t{1} << 31;

// ---------------------------------------------------------------------------------------------
// writer helpers

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

}  // namespace prl
