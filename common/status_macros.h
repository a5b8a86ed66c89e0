// Status propagation helpers: the project's single RETURN_IF_ERROR / ASSIGN_OR_RETURN pair.
#ifndef PRL_COMMON_STATUS_MACROS_H_
#define PRL_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if not OK.
#define PRL_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status prl_status_ = (expr);       \
    if (!prl_status_.ok()) return prl_status_; \
  } while (false)

#define PRL_STATUS_CONCAT_INNER_(a, b) a##b
#define PRL_STATUS_CONCAT_(a, b) PRL_STATUS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from the enclosing
// function, otherwise moves the value into `lhs` (which may be a declaration: `auto x`).
#define PRL_ASSIGN_OR_RETURN(lhs, rexpr) \
  PRL_ASSIGN_OR_RETURN_IMPL_(PRL_STATUS_CONCAT_(prl_statusor_, __LINE__), lhs, rexpr)

// `lhs` may be a declaration, so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define PRL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)   \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)
// NOLINTEND(bugprone-macro-parentheses)

#endif  // PRL_COMMON_STATUS_MACROS_H_
