// Fuzzes the reading of checksummed files (common/checksummed_file.h), the format of every
// checkpoint and artifact PRL writes and of model files pushed over gRPC: the input is a whole
// file. Checks that ParseChecksummedBytes and ReadChecksummedFile (on the same bytes written
// to a file) agree, that only DATA_LOSS refuses a file, that an accepted file's payload is its
// bytes after the 24-byte header, and that writing that payload back with
// WriteChecksummedFile reproduces the file byte for byte.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/checksummed_file.h"
#include "common/logging.h"
#include "fuzz/temp_file.h"

namespace prl::fuzz {
namespace {

constexpr size_t kHeaderSize = 24;

void TestOneInput(absl::string_view contents) {
  const absl::StatusOr<std::string> parsed = ParseChecksummedBytes(contents, "fuzz input");
  PRL_CHECK(parsed.ok() || parsed.status().code() == absl::StatusCode::kDataLoss)
      << parsed.status();
  PRL_CHECK(parsed.ok() || !parsed.status().message().empty());

  // the file reader: the same verdict and payload.
  const std::string path = TempPath("checksummed");
  WriteFileOrDie(path, contents);
  const absl::StatusOr<std::string> read = ReadChecksummedFile(path);
  PRL_CHECK(read.ok() == parsed.ok())
      << "bytes: " << parsed.status() << "; file: " << read.status();
  if (!parsed.ok()) {
    PRL_CHECK(read.status().code() == parsed.status().code()) << read.status();
    return;
  }
  PRL_CHECK(*read == *parsed);
  PRL_CHECK(contents.size() == kHeaderSize + parsed->size());
  PRL_CHECK(contents.substr(kHeaderSize) == *parsed);

  // an accepted file is exactly what the writer makes of its payload.
  const std::string copy = TempPath("checksummed-copy");
  const absl::Status written = WriteChecksummedFile(copy, *parsed);
  PRL_CHECK(written.ok()) << written;
  PRL_CHECK(ReadFileOrDie(copy) == contents) << "the writer makes other bytes of this payload";
}

}  // namespace
}  // namespace prl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prl::fuzz::TestOneInput(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
