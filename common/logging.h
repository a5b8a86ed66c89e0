// Minimal line-oriented logging to stderr (Debian's Abseil predates absl/log).
//
//   PRL_LOG(INFO) << "listening on " << address;
//   PRL_LOG(FATAL) << "cannot happen";  // logs, then aborts
//
// Each statement writes one line, "I1121 20:31:05.123456 file.cc:42] message", atomically.
// Thread-safe.
#ifndef PRL_COMMON_LOGGING_H_
#define PRL_COMMON_LOGGING_H_

#include <sstream>

namespace prl {
namespace logging_internal {

enum class Severity { kInfo, kWarning, kError, kFatal };

// Collects one log line and writes it when destroyed; aborts for kFatal.
class LogMessage {
 public:
  LogMessage(Severity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  Severity severity_;
  std::ostringstream stream_;
};

}  // namespace logging_internal
}  // namespace prl

#define PRL_LOG_SEVERITY_INFO ::prl::logging_internal::Severity::kInfo
#define PRL_LOG_SEVERITY_WARNING ::prl::logging_internal::Severity::kWarning
#define PRL_LOG_SEVERITY_ERROR ::prl::logging_internal::Severity::kError
#define PRL_LOG_SEVERITY_FATAL ::prl::logging_internal::Severity::kFatal

#define PRL_LOG(severity) \
  ::prl::logging_internal::LogMessage(PRL_LOG_SEVERITY_##severity, __FILE__, __LINE__).stream()

// For programmer errors only: logs the condition and aborts when it is false.
#define PRL_CHECK(condition) \
  if (!(condition)) PRL_LOG(FATAL) << "Check failed: " #condition " "

#endif  // PRL_COMMON_LOGGING_H_
