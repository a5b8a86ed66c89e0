// An exclusive lock on a process's state directory, so that two processes started on the same
// directory by mistake (a second learner, a second replay shard) cannot both write into it:
// the second one refuses to start, naming the first. The lock is flock(2) on <dir>/LOCK, which
// the kernel releases when the holder exits in any way (SIGKILL included), so a crashed
// process never leaves a lock behind for its restart.
#ifndef PRL_COMMON_DIRECTORY_LOCK_H_
#define PRL_COMMON_DIRECTORY_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prl {

class DirectoryLock {
 public:
  // Locks `dir` for this process, creating it and its parents when missing; `holder` (e.g.
  // "prl_learner") is written into the lock file with the pid for the message another process gets.
  // Errors: FAILED_PRECONDITION naming the directory and who holds it when another process
  // (or another DirectoryLock of this one) does; the OS error, naming the path, otherwise.
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Acquire(const std::string& dir,
                                                                absl::string_view holder);

  ~DirectoryLock();  // releases the lock (the file stays)
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  DirectoryLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  const int fd_;
};

}  // namespace prl

#endif  // PRL_COMMON_DIRECTORY_LOCK_H_
