#include "common/testing/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace prl::testing {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
    bool merge_stderr) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // child: stdout to the pipe, unblock the signals a test harness may have blocked.
    dup2(fds[1], STDOUT_FILENO);
    if (merge_stderr) dup2(fds[1], STDERR_FILENO);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, fds[0]));
}

Subprocess::~Subprocess() {
  if (!exit_status_.has_value()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close(stdout_fd_);
}

absl::StatusOr<std::string> Subprocess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{stdout_fd_, POLLIN, 0};
    if (wait_ms <= 0 || poll(&p, 1, static_cast<int>(wait_ms)) == 0) {
      return absl::DeadlineExceededError("no complete stdout line before the deadline");
    }
    char chunk[4096];
    const ssize_t n = read(stdout_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::OutOfRangeError("stdout closed");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& prefix,
                                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    auto line = ReadLine(deadline - absl::Now());
    if (!line.ok() || line->rfind(prefix, 0) == 0) return line;
  }
}

std::string Subprocess::ReadAll(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string all;
  for (;;) {
    auto line = ReadLine(deadline - absl::Now());
    if (!line.ok()) break;
    all += *line + "\n";
  }
  all += buffer_;
  buffer_.clear();
  return all;
}

void Subprocess::Signal(int signal) { kill(pid_, signal); }

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  if (exit_status_.has_value()) return *exit_status_;
  // a pidfd would avoid polling; Debian 12's glibc has no wrapper, so use the syscall.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    close(pidfd);
    if (ready == 0) return absl::DeadlineExceededError("child still running at the deadline");
  }
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return absl::InternalError("waitpid failed");
  exit_status_ = status;
  return status;
}

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "prl", "/", path);
}

}  // namespace prl::testing
