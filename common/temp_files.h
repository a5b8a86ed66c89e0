// Temporary files beside their targets: the names every crash-safe writer of PRL builds its
// files under before renaming them into place, and the sweep that removes what a writer killed
// mid-write left behind.
#ifndef PRL_COMMON_TEMP_FILES_H_
#define PRL_COMMON_TEMP_FILES_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prl {

// A fresh temporary name beside `path`: path + ".tmp." + pid + "." + n + "." + 16 random hex
// digits. The random part keeps names apart across restarts too: a process restarted in a
// container gets the same pid (often 1) and the same counter, and writers that create their
// temporary file exclusively (HDF5's H5F_ACC_EXCL) would otherwise find the dead process's.
std::string TempPathFor(const std::string& path);

// True for the last component of a name TempPathFor makes, or of the older
// "<name>.tmp.<pid>.<n>" form.
bool IsTempFileName(absl::string_view file_name);

// Removes the temporary files (IsTempFileName) in `dir` and in its subdirectories down to
// `depth` levels, those last modified at least `min_age` ago: what writers killed mid-write
// left behind. Files younger than that may belong to a live writer of another process sharing
// the directory and are kept. Symbolic links are not followed. Returns how many were removed;
// a missing `dir` removes nothing.
int RemoveStaleTempFiles(const std::string& dir, int depth, absl::Duration min_age);

}  // namespace prl

#endif  // PRL_COMMON_TEMP_FILES_H_
