// Fuzzes the HDF5 dataset reader (common/dataset_reader.h), which loads D4RL-layout files from
// disk for prior training. An input is one of two kinds:
//   - an HDF5 file (it starts with HDF5's signature): written to a scratch file as it is, for
//     ReadDataset to open. PRL's own files carry checksums, so most mutations end as DATA_LOSS
//     inside HDF5 (which is not instrumented and gives the fuzzer no guidance);
//   - anything else: a description of a file's layout, which this target writes with HDF5's
//     C++ API before ReadDataset opens it: which keys exist, each one's element type, rank,
//     dimensions (some of them huge, in chunked datasets with no data written), storage and
//     values, the infos group and the metadata attributes. This reaches the reader's own logic:
//     types, ranks, row counts, flags, conversions, attributes.
// Checks that a refusal is one of the documented codes, that an accepted dataset is consistent
// (every column with the rows and widths it claims, finite values where the reader promises
// them, episodes that end in order), and that a described file with every key in its natural
// form (D4RL's types, ranks and row counts, finite values) is read back exactly.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "H5Cpp.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/dataset.h"
#include "common/dataset_reader.h"
#include "common/logging.h"
#include "fuzz/temp_file.h"

namespace prl::fuzz {
namespace {

constexpr absl::string_view kHdf5Signature("\x89HDF\r\n\x1a\n", 8);

// ---- described files ------------------------------------------------------------------------

// Reads the description front to back; zeros once it is used up.
class ByteReader {
 public:
  explicit ByteReader(absl::string_view bytes) : bytes_(bytes) {}
  uint8_t Next() {
    if (bytes_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(bytes_[0]);
    bytes_.remove_prefix(1);
    return b;
  }
  void Fill(void* out, size_t n) {
    const size_t take = std::min(n, bytes_.size());
    std::memcpy(out, bytes_.data(), take);
    std::memset(static_cast<char*>(out) + take, 0, n - take);
    bytes_.remove_prefix(take);
  }

 private:
  absl::string_view bytes_;
};

// The keys a described file may hold, and what each is in D4RL's layout.
struct KeyInfo {
  const char* name;
  bool flag;  // terminals, timeouts: bool; otherwise float32
  int natural_rank;
};
constexpr KeyInfo kKeys[] = {
    {"observations", false, 2}, {"actions", false, 2},    {"rewards", false, 1},
    {"terminals", true, 1},     {"timeouts", true, 1},    {"next_observations", false, 2},
    {"infos/a", false, 1},      {"infos/goal", false, 2},
};
constexpr int kNumKeys = sizeof(kKeys) / sizeof(kKeys[0]);

// Element types: 0 is the key's natural one (float32, or h5py's bool enum for flags).
enum ElementType {
  kNatural,
  kF32,
  kF64,
  kI8,
  kU8,
  kI32BigEndian,
  kI64,
  kBool,
  kBitfield,
  kString,
  kNumTypes
};

// Dimensions that need far more memory than a fuzzer has, or overflow products of them.
constexpr hsize_t kHugeDims[] = {1ull << 31, (1ull << 32) + 1, 1ull << 40,       (1ull << 62) + 1,
                                 1ull << 63, ~hsize_t{0} - 1,  (1ull << 31) - 1, 1ull << 20};

struct KeyLayout {
  bool present = false;
  int type = kNatural;
  int rank = 0;
  hsize_t dims[3] = {0, 0, 0};
  bool huge = false;     // some dimension is from kHugeDims
  bool natural = false;  // natural type, rank and dimensions
  bool chunked = false;
  bool compressed = false;
};

H5::DataType FileType(int type, bool flag) {
  switch (type == kNatural ? (flag ? kBool : kF32) : type) {
    case kF64:
      return H5::PredType::IEEE_F64LE;
    case kI8:
      return H5::PredType::STD_I8LE;
    case kU8:
      return H5::PredType::STD_U8LE;
    case kI32BigEndian:
      return H5::PredType::STD_I32BE;
    case kI64:
      return H5::PredType::STD_I64LE;
    case kBool: {
      const H5::IntType base(H5::PredType::NATIVE_INT8);
      H5::EnumType boolean(base);
      int8_t no = 0, yes = 1;
      boolean.insert("FALSE", &no);
      boolean.insert("TRUE", &yes);
      return boolean;
    }
    case kBitfield:
      return H5::PredType::STD_B8LE;
    case kString: {
      H5::StrType string(H5::PredType::C_S1, 4);
      return string;
    }
    default:
      return H5::PredType::IEEE_F32LE;
  }
}

// What the test knows of the file it wrote, for the exact check.
struct Expected {
  bool natural = false;  // the reader must accept the file and return these values
  int64_t rows = 0;
  std::vector<float> observations, actions, rewards;
  std::vector<uint8_t> terminals;
};

// Writes the file `description` describes to `path`; false when HDF5 refuses to make it.
bool WriteDescribedFile(absl::string_view description, const std::string& path,
                        Expected* expected) {
  ByteReader in(description);
  const hsize_t rows = in.Next() % 17;
  const hsize_t widths[2] = {static_cast<hsize_t>(in.Next() % 4 + 1),
                             static_cast<hsize_t>(in.Next() % 3 + 1)};
  const uint8_t attributes = in.Next();
  KeyLayout keys[kNumKeys];
  for (int k = 0; k < kNumKeys; ++k) {
    KeyLayout& key = keys[k];
    const uint8_t presence = in.Next();
    // the first four keys are there unless a bit says otherwise; the rest only when one does
    key.present = k < 4 ? (presence & 0x80) == 0 : (presence & 0x80) != 0;
    key.type = (presence & 0x0f) % kNumTypes;
    const uint8_t rank = in.Next() % 5;
    key.rank = rank == 0 ? kKeys[k].natural_rank : rank - 1;
    bool natural_dims = true;
    for (int d = 0; d < 3; ++d) {
      const uint8_t b = in.Next();
      const hsize_t natural = d == 0 ? rows : d == 1 ? widths[k == 1 ? 1 : 0] : 2;
      if (b == 0) {
        key.dims[d] = natural;
      } else if (b >= 0xf8) {
        key.dims[d] = kHugeDims[b & 7];
        key.huge = key.huge || d < key.rank;
        natural_dims = natural_dims && d >= key.rank;
      } else {
        key.dims[d] = (b - 1) % 9;
        natural_dims = natural_dims && (d >= key.rank || key.dims[d] == natural);
      }
    }
    const uint8_t storage = in.Next();
    key.chunked = key.huge || (storage & 1) != 0;
    key.compressed = key.chunked && (storage & 2) != 0;
    key.natural = key.type == kNatural && key.rank == kKeys[k].natural_rank && natural_dims;
  }
  // the natural file: every required key, and every optional one present, in natural form
  expected->natural = true;
  for (int k = 0; k < kNumKeys; ++k) {
    if (keys[k].present ? !keys[k].natural : k < 4) expected->natural = false;
  }
  expected->rows = static_cast<int64_t>(rows);

  H5::Exception::dontPrint();
  try {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    if ((attributes & 0x40) != 0) {
      // "infos" as a dataset, not a group
      root.createDataSet("infos", H5::PredType::IEEE_F32LE, H5::DataSpace(H5S_SCALAR));
    } else if (keys[6].present || keys[7].present) {
      root.createGroup("infos");
    }
    for (int k = 0; k < kNumKeys; ++k) {
      const KeyLayout& key = keys[k];
      if (!key.present || (k >= 6 && (attributes & 0x40) != 0)) continue;
      const H5::DataType type = FileType(key.type, kKeys[k].flag);
      std::vector<hsize_t> dims(key.dims, key.dims + key.rank);
      const H5::DataSpace space = key.rank == 0 ? H5::DataSpace(H5S_SCALAR) : [&] {
        std::vector<hsize_t> max_dims(dims.size(), H5S_UNLIMITED);
        return H5::DataSpace(key.rank, dims.data(), key.chunked ? max_dims.data() : nullptr);
      }();
      H5::DSetCreatPropList properties;
      if (key.chunked && key.rank > 0) {
        std::vector<hsize_t> chunk(dims.size());
        for (size_t d = 0; d < dims.size(); ++d) chunk[d] = std::clamp<hsize_t>(dims[d], 1, 4);
        properties.setChunk(key.rank, chunk.data());
        if (key.compressed) properties.setDeflate(1);
      }
      const H5::DataSet dataset = root.createDataSet(kKeys[k].name, type, space, properties);
      if (key.huge) continue;  // nothing written: HDF5 reads the fill value
      size_t elements = 1;
      for (hsize_t d : dims) elements *= d;
      if (elements == 0) continue;
      std::vector<char> values(elements * type.getSize());
      in.Fill(values.data(), values.size());
      dataset.write(values.data(), type);
      if (!expected->natural) continue;
      // natural keys: float32 little-endian values, or one byte per flag
      if (k < 3) {
        std::vector<float>& out = k == 0   ? expected->observations
                                  : k == 1 ? expected->actions
                                           : expected->rewards;
        out.resize(elements);
        std::memcpy(out.data(), values.data(), values.size());
        for (float v : out) expected->natural = expected->natural && std::isfinite(v);
      } else if (k == 3) {
        for (char c : values) expected->terminals.push_back(c != 0);
      } else if (k == 5) {
        for (size_t i = 0; i < elements; ++i) {
          float v;
          std::memcpy(&v, values.data() + 4 * i, 4);
          expected->natural = expected->natural && std::isfinite(v);
        }
      }
    }
    // metadata attributes, some of the wrong type or shape
    const H5::StrType text(H5::PredType::C_S1, H5T_VARIABLE);
    const std::string env_spec = "domain: DOMAIN_POINT_MAZE\n";
    if ((attributes & 0x01) != 0) {
      root.createAttribute("env_spec", text, H5::DataSpace(H5S_SCALAR)).write(text, env_spec);
    } else if ((attributes & 0x02) != 0) {
      const int64_t number = 7;
      root.createAttribute("env_spec", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR))
          .write(H5::PredType::NATIVE_INT64, &number);
    }
    if ((attributes & 0x04) != 0) {
      const H5::StrType fixed(H5::PredType::C_S1, 6);
      root.createAttribute("collector", fixed, H5::DataSpace(H5S_SCALAR)).write(fixed, "random");
    }
    if ((attributes & 0x08) != 0) {
      const int64_t seed[3] = {3, 4, 5};
      const hsize_t n = (attributes & 0x10) != 0 ? 3 : 1;
      root.createAttribute("seed", H5::PredType::STD_I64BE, H5::DataSpace(1, &n))
          .write(H5::PredType::NATIVE_INT64, seed);
    } else if ((attributes & 0x10) != 0) {
      const double seed = 1.5;
      root.createAttribute("seed", H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR))
          .write(H5::PredType::NATIVE_DOUBLE, &seed);
    }
    if ((attributes & 0x20) != 0) {
      root.createAttribute("prl_version", text, H5::DataSpace(H5S_SCALAR))
          .write(text, std::string("0.0.0"));
    }
  } catch (const H5::Exception&) {
    return false;  // a layout HDF5 does not make (e.g. a huge contiguous dataset)
  }
  return true;
}

// ---- the checks -----------------------------------------------------------------------------

bool AllFinite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

void CheckConsistent(const Dataset& d) {
  PRL_CHECK(d.size >= 0 && d.obs_dim > 0 && d.act_dim > 0)
      << d.size << " rows, obs_dim " << d.obs_dim << ", act_dim " << d.act_dim;
  const size_t rows = static_cast<size_t>(d.size);
  PRL_CHECK(d.observations.size() == rows * d.obs_dim);
  PRL_CHECK(d.next_observations.size() == rows * d.obs_dim);
  PRL_CHECK(d.actions.size() == rows * d.act_dim);
  PRL_CHECK(d.rewards.size() == rows);
  PRL_CHECK(d.terminals.size() == rows && d.timeouts.size() == rows);
  for (size_t i = 0; i < rows; ++i) PRL_CHECK(d.terminals[i] <= 1 && d.timeouts[i] <= 1);
  PRL_CHECK(AllFinite(d.observations) && AllFinite(d.next_observations));
  PRL_CHECK(AllFinite(d.actions) && AllFinite(d.rewards));
  for (const Dataset::Info& info : d.infos) {
    size_t width = 1;
    for (int64_t dim : info.dims) {
      PRL_CHECK(dim >= 0) << info.name;
      width *= static_cast<size_t>(dim);
    }
    PRL_CHECK(info.values.size() == rows * width) << info.name;
    PRL_CHECK(!info.name.empty() && d.FindInfo(info.name) == &info) << info.name;
  }
  // episodes: increasing ends, the last at the end of the data.
  int64_t previous = 0;
  for (int64_t end : d.EpisodeEnds()) {
    PRL_CHECK(end > previous && end <= d.size) << end << " after " << previous;
    previous = end;
  }
  PRL_CHECK(previous == d.size);
}

void TestOneInput(absl::string_view input) {
  const std::string path = TempPath("dataset.hdf5");
  Expected expected;
  if (input.substr(0, kHdf5Signature.size()) == kHdf5Signature) {
    WriteFileOrDie(path, input);
  } else if (!WriteDescribedFile(input, path, &expected)) {
    return;
  }
  const absl::StatusOr<Dataset> read = ReadDataset(path);
  if (!read.ok()) {
    const absl::StatusCode code = read.status().code();
    PRL_CHECK(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument ||
              code == absl::StatusCode::kResourceExhausted)
        << read.status();
    PRL_CHECK(!read.status().message().empty());
    PRL_CHECK(!expected.natural) << "a natural file is refused: " << read.status();
    return;
  }
  CheckConsistent(*read);
  if (expected.natural) {
    PRL_CHECK(read->size == expected.rows) << read->size << " rows, wrote " << expected.rows;
    PRL_CHECK(read->observations == expected.observations);
    PRL_CHECK(read->actions == expected.actions);
    PRL_CHECK(read->rewards == expected.rewards);
    PRL_CHECK(read->terminals == expected.terminals);
  }
}

}  // namespace
}  // namespace prl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prl::fuzz::TestOneInput(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
