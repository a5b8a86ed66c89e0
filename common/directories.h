// Creating directories durably: mkdir -p where each directory it creates is fsynced into its
// parent, so that a directory a caller has acknowledged (an experiment's, a model's) is still
// there after a power loss, not only after a crash.
#ifndef PRL_COMMON_DIRECTORIES_H_
#define PRL_COMMON_DIRECTORIES_H_

#include <string>

#include "absl/status/status.h"

namespace prl {

// Creates `path` and any missing parents (mode 0755); an existing directory is fine.
// Errors: the OS error naming the directory that could not be created or synced.
absl::Status MakeDirectories(const std::string& path);

// fsyncs the directory `dir`, making the entries created, renamed or removed in it durable.
// Errors: the OS error naming it.
absl::Status SyncDirectory(const std::string& dir);

}  // namespace prl

#endif  // PRL_COMMON_DIRECTORIES_H_
