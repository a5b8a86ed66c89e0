#!/usr/bin/env bash
# Runs PRL's linters in one go; exits non-zero if any of them fails. See --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

# Compile flags for clang-tidy when there is no compile_commands.json.
FALLBACK_FLAGS=(
  -std=c++17 -I. -I.bazel/bin
  -isystem /usr/include/hdf5/serial
  -isystem /usr/include/torch/csrc/api/include
)

usage() {
  cat <<'EOF'
Usage: scripts/lint.sh [--fix] [--tidy [--all]] [-h | --help]

Runs, on the repository's files (tracked, plus new ones git does not ignore):
  clang-format  --dry-run -Werror on every *.cc and *.h (.clang-format)
  clang-tidy    only with --tidy (it is slow): .clang-tidy's checks, warnings
                as errors, on the *.cc files changed against $PRL_LINT_BASE
                (default HEAD; new files included), or on every *.cc with --all
  bash -n       on every *.sh and every shell-shebang script (e.g. .ci/run)
  shellcheck    on the same scripts (warnings and errors), if installed
  buildifier    on BUILD, *.BUILD, *.bzl, WORKSPACE files, if installed

Options:
  --fix    rewrite files in place (clang-format -i, buildifier -mode=fix)
           instead of only checking them
  --tidy   also run clang-tidy
  --all    with --tidy: every *.cc, not only the changed ones
  -h, --help

clang-tidy's compile flags: compile_commands.json at the repository root when
there is one, else: -std=c++17 -I. -I.bazel/bin -isystem /usr/include/hdf5/serial
-isystem /usr/include/torch/csrc/api/include (the generated *.pb.h headers
under .bazel/bin/ exist once `bazel build //...` has run). `bazel build` does not
write a compile_commands.json; one can be made from
  bazel aquery --output=jsonproto 'mnemonic("CppCompile", //...)'
taking each action's "arguments" as one entry, "file" the argument after -c,
and "directory" the output of `bazel info execution_root`.
Environment: PRL_LINT_BASE (git revision for "changed", default HEAD),
PRL_LINT_JOBS (parallel clang-tidy processes, default 1).
EOF
}

fix=0
tidy=0
tidy_all=0
for arg in "$@"; do
  case "${arg}" in
    --fix) fix=1 ;;
    --tidy) tidy=1 ;;
    --all) tidy_all=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      echo "[lint] unknown option: ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { printf '[lint] %s\n' "$*"; }
failures=()
# fail NAME [HINT]: records a failed check.
fail() {
  printf '[lint] FAILED: %s%s\n' "$1" "${2:+ ($2)}" >&2
  failures+=("$1")
}
have() { command -v "$1" >/dev/null 2>&1; }

# NUL-separated existing files, tracked or new-but-not-ignored, matching the
# given pathspecs (git's * also matches across directories).
list_files() {
  local f
  git ls-files -z --cached --others --exclude-standard -- "$@" | sort -zu |
    while IFS= read -r -d '' f; do
      if [[ -f "${f}" && ! -L "${f}" ]]; then
        printf '%s\0' "${f}"
      fi
    done
}

# --- clang-format ----------------------------------------------------------
cxx_files=()
mapfile -d '' -t cxx_files < <(list_files '*.cc' '*.h')
if [[ "${#cxx_files[@]}" -eq 0 ]]; then
  log "clang-format: no *.cc/*.h files"
elif ! have clang-format; then
  fail "clang-format" "not installed: run scripts/setup.sh"
elif [[ "${fix}" -eq 1 ]]; then
  log "clang-format: formatting ${#cxx_files[@]} files in place"
  printf '%s\0' "${cxx_files[@]}" | xargs -0 clang-format -i --style=file ||
    fail "clang-format"
else
  log "clang-format: checking ${#cxx_files[@]} files"
  printf '%s\0' "${cxx_files[@]}" | xargs -0 clang-format --dry-run -Werror --style=file ||
    fail "clang-format" "scripts/lint.sh --fix rewrites the files"
fi

# --- clang-tidy ------------------------------------------------------------
if [[ "${tidy}" -eq 0 ]]; then
  log "clang-tidy: skipped (slow; pass --tidy, see --help)"
elif ! have clang-tidy; then
  fail "clang-tidy" "not installed: run scripts/setup.sh"
else
  tidy_files=()
  if [[ "${tidy_all}" -eq 1 ]]; then
    mapfile -d '' -t tidy_files < <(list_files '*.cc')
  else
    base="${PRL_LINT_BASE:-HEAD}"
    mapfile -d '' -t tidy_files < <(
      {
        git diff -z --name-only --diff-filter=d "${base}" -- '*.cc'
        git ls-files -z --others --exclude-standard -- '*.cc'
      } | sort -zu
    )
  fi
  if [[ "${#tidy_files[@]}" -eq 0 ]]; then
    log "clang-tidy: no *.cc files to check (--all checks every one)"
  else
    tidy_cmd=(clang-tidy --quiet --warnings-as-errors='*')
    if [[ -f compile_commands.json ]]; then
      log "clang-tidy: ${#tidy_files[@]} files, flags from compile_commands.json"
      tidy_cmd+=(-p "${ROOT}")
      tidy_tail=()
    else
      log "clang-tidy: ${#tidy_files[@]} files, no compile_commands.json: fallback flags (see --help)"
      [[ -d .bazel/bin ]] || log "clang-tidy: no .bazel/bin/: generated proto headers will be missing"
      tidy_tail=(-- "${FALLBACK_FLAGS[@]}")
    fi
    printf '%s\0' "${tidy_files[@]}" |
      xargs -0 -P "${PRL_LINT_JOBS:-1}" -I{} "${tidy_cmd[@]}" {} "${tidy_tail[@]}" ||
      fail "clang-tidy"
  fi
fi

# --- shell scripts -----------------------------------------------------------
sh_files=()
while IFS= read -r -d '' f; do
  first=""
  IFS= read -r first <"${f}" || true
  if [[ "${f}" == *.sh || "${first}" =~ ^#!.*[/[:space:]](ba|da)?sh([[:space:]]|$) ]]; then
    sh_files+=("${f}")
  fi
done < <(list_files)
if [[ "${#sh_files[@]}" -eq 0 ]]; then
  log "bash -n: no shell scripts"
else
  log "bash -n: ${#sh_files[@]} scripts"
  for f in "${sh_files[@]}"; do
    bash -n "${f}" || fail "bash-n:${f}"
  done
  if have shellcheck; then
    log "shellcheck: ${#sh_files[@]} scripts"
    shellcheck -S warning "${sh_files[@]}" || fail "shellcheck"
  else
    log "shellcheck: not installed, skipped (apt-get install shellcheck)"
  fi
fi

# --- buildifier --------------------------------------------------------------
bzl_files=()
mapfile -d '' -t bzl_files < <(list_files 'BUILD' '*/BUILD' '*.BUILD' 'BUILD.bazel' '*/BUILD.bazel' \
  '*.bzl' 'WORKSPACE' '*/WORKSPACE' 'WORKSPACE.bazel' '*/WORKSPACE.bazel')
if ! have buildifier; then
  log "buildifier: not installed, skipped"
elif [[ "${#bzl_files[@]}" -eq 0 ]]; then
  log "buildifier: no Bazel files"
elif [[ "${fix}" -eq 1 ]]; then
  log "buildifier: formatting ${#bzl_files[@]} files in place"
  buildifier -mode=fix "${bzl_files[@]}" || fail "buildifier"
else
  log "buildifier: checking ${#bzl_files[@]} files"
  buildifier -mode=check "${bzl_files[@]}" || fail "buildifier" "scripts/lint.sh --fix rewrites the files"
fi

# --- summary -----------------------------------------------------------------
if [[ "${#failures[@]}" -ne 0 ]]; then
  log "${#failures[@]} check(s) failed: ${failures[*]}"
  exit 1
fi
log "all checks passed"
