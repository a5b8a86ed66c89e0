// Scratch files for fuzz targets whose code under test reads a path: one file per name and
// process, in $TEST_TMPDIR (under Bazel), else $TMPDIR, else /tmp. Not thread-safe (fuzz
// targets run one input at a time).
#ifndef PRL_FUZZ_TEMP_FILE_H_
#define PRL_FUZZ_TEMP_FILE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace prl::fuzz {

// The path of this process's scratch file `name` ("<dir>/prl-fuzz-<pid>-<name>").
std::string TempPath(absl::string_view name);

// Replaces the file at `path` with `bytes`; CHECK-fails when it cannot (a broken machine, not
// an interesting input).
void WriteFileOrDie(const std::string& path, absl::string_view bytes);

// The whole content of `path`; CHECK-fails when it cannot be read.
std::string ReadFileOrDie(const std::string& path);

}  // namespace prl::fuzz

#endif  // PRL_FUZZ_TEMP_FILE_H_
