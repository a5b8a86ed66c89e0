#!/usr/bin/env bash
# Runs PRL's tests: scripts/setup.sh (Debian packages) and scripts/setup.sh --client (the Python
# client's virtualenv, .venv), then `bazel test //...`, then, when the whole tree was tested,
# each libFuzzer target for a few seconds (fuzz/run.sh --ci).
#
#   scripts/test.sh                      # bazel test //... and the fuzzers
#   scripts/test.sh //common/...         # only these targets (no fuzzers)
#   scripts/test.sh -c opt               # extra flags; targets default to //...
#
# Arguments go to `bazel test` as they are; when none of them is a target
# pattern (contains // or ... or :, or follows --), //... is appended.
# PRL_TEST_FUZZ_SECONDS sets each fuzzer's time (default 5; 0 skips them); the
# fuzzers (clang, libFuzzer, AddressSanitizer) build in an output base of their own.
# The output streams and is also kept in a log (path printed at the end). The
# last line is the count of Bazel's per-target results and the fuzzers' (one
# line each in Bazel's summary form, //fuzz:<name>_fuzzer PASSED or FAILED):
#   N passed, N failed[, N skipped]
# and the exit status is Bazel's (4, no tests found, is a failure too), or 1
# when Bazel's is 0 and a fuzzer failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

scripts/setup.sh
# The Python client's virtualenv (.venv: the client's packages from PyPI and the client itself)
# for //tests:python_client_test, which fails, saying why, when this could not make it.
if ! scripts/setup.sh --client; then
  echo "[test] WARNING: scripts/setup.sh --client failed; //tests:python_client_test will fail" >&2
fi

# The package layering (docs/architecture.md) before any test: a service that reaches into
# another's internals fails the run here, naming the dependency path.
scripts/check_layering.sh

has_target=0
after_dashes=0
for arg in "$@"; do
  if [[ "${after_dashes}" -eq 1 ]]; then
    has_target=1
    continue
  fi
  case "${arg}" in
    --) after_dashes=1 ;;
    -*) ;;
    *//* | *...* | *:*) has_target=1 ;;
  esac
done
args=("$@")
if [[ "${has_target}" -eq 0 ]]; then
  args+=("//...")
fi

log_file="$(mktemp "${TMPDIR:-/tmp}/prl-bazel-test.XXXXXX.log")"

echo "[test] bazel test --test_summary=short ${args[*]}"
set +e
bazel test --test_summary=short "${args[@]}" 2>&1 | tee "${log_file}"
rc="${PIPESTATUS[0]}"
set -e

# The libFuzzer targets (docs/operations.md, Hardening), when the whole tree was tested: their
# summary lines go to the same log, so the count below includes them.
fuzz_rc=0
fuzz_seconds="${PRL_TEST_FUZZ_SECONDS:-5}"
if [[ "${has_target}" -eq 0 && "${fuzz_seconds}" != 0 ]]; then
  echo "[test] fuzz/run.sh --ci ${fuzz_seconds}"
  set +e
  fuzz/run.sh --ci "${fuzz_seconds}" 2>&1 | tee -a "${log_file}"
  fuzz_rc="${PIPESTATUS[0]}"
  set -e
fi

# Bazel's summary has one line per test target:
#   //pkg:name_test    PASSED in 0.4s     //pkg:name_test    (cached) PASSED in 0.4s
#   //pkg:name_test    FAILED in 1.2s     //pkg:name_test    FAILED TO BUILD
#   //pkg:name_test    TIMEOUT in 60.0s   //pkg:name_test    NO STATUS
# PASSED and FLAKY (passed on a retry) count as passed, SKIPPED as skipped, any
# other status as failed. The last status of each label wins.
read -r passed failed skipped < <(
  sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r/\n/g' "${log_file}" | awk '
    $1 ~ /^(@[^\/]*)?\/\/[^ \t]*$/ && NF >= 2 {
      label = $1
      rest = $0
      sub(/^[ \t]*[^ \t]+[ \t]+/, "", rest)
      sub(/^\(cached\)[ \t]+/, "", rest)
      if (rest ~ /^(PASSED|FLAKY)([ ,]|$)/) status[label] = "passed"
      else if (rest ~ /^SKIPPED([ ,]|$)/) status[label] = "skipped"
      else if (rest ~ /^(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE|BLAZE HALTED|BUILD HALTED)/) status[label] = "failed"
    }
    END {
      for (label in status) count[status[label]]++
      printf "%d %d %d\n", count["passed"], count["failed"], count["skipped"]
    }'
)

echo "[test] log: ${log_file}"
if [[ "${rc}" -eq 4 ]]; then
  echo "[test] ERROR: bazel found no test targets (exit 4)" >&2
elif [[ "${rc}" -eq 0 && $((passed + failed)) -eq 0 ]]; then
  echo "[test] ERROR: bazel exited 0 but no test result was found in its output" >&2
  rc=1
elif [[ "${rc}" -ne 0 ]]; then
  echo "[test] bazel test exited ${rc}" >&2
fi
if [[ "${fuzz_rc}" -ne 0 ]]; then
  echo "[test] fuzz/run.sh --ci exited ${fuzz_rc} (reproducers in state/fuzz/)" >&2
  if [[ "${rc}" -eq 0 ]]; then rc=1; fi
fi

summary="${passed} passed, ${failed} failed"
if [[ "${skipped}" -gt 0 ]]; then
  summary+=", ${skipped} skipped"
fi
echo "${summary}"
exit "${rc}"
