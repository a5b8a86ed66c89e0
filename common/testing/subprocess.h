// Runs a binary as a child process for multi-process tests: reads its stdout line by line
// with a deadline, signals it and waits for its exit with a deadline. Its stderr goes to the
// test's stderr unless merged into stdout. The destructor SIGKILLs a child that is still running.
// Not thread-safe.
#ifndef PRL_COMMON_TESTING_SUBPROCESS_H_
#define PRL_COMMON_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace prl::testing {

class Subprocess {
 public:
  // Starts `argv[0]` with `argv`, adding `env` to the inherited environment. With
  // `merge_stderr`, stderr goes to the same pipe as stdout.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
      bool merge_stderr = false);
  ~Subprocess();

  // The next line of stdout, without the newline. Errors: DEADLINE_EXCEEDED, or
  // OUT_OF_RANGE when stdout closed first.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);

  // Reads stdout lines until one starts with `prefix`; returns it.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix, absl::Duration timeout);

  // Everything left on stdout until it closes (or the deadline passes).
  std::string ReadAll(absl::Duration timeout);

  void Signal(int signal);

  // Waits for the child to exit; returns its wait status (see WIFEXITED), or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  pid_t pid() const { return pid_; }

 private:
  Subprocess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}

  pid_t pid_;
  int stdout_fd_;
  std::string buffer_;
  std::optional<int> exit_status_;
};

// The path of a runfile, e.g. Runfile("replay/prl_replay").
std::string Runfile(const std::string& path);

}  // namespace prl::testing

#endif  // PRL_COMMON_TESTING_SUBPROCESS_H_
