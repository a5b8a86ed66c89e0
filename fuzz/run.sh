#!/usr/bin/env bash
# Builds PRL's libFuzzer targets (clang, libFuzzer, AddressSanitizer: --config=fuzz in .bazelrc)
# and runs them. See docs/operations.md (Hardening) and --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

TARGETS=(insert_request tensor spec dataset checksummed_file)
# The fuzz build's own output base: its clang toolchain never replaces the default build's.
OUTPUT_BASE="${PRL_FUZZ_OUTPUT_BASE:-${HOME}/.cache/prl-bazel-fuzz}"
BIN=.bazel/fuzz-bin/fuzz

usage() {
  cat <<USAGE
Usage: fuzz/run.sh TARGET|all SECONDS [LIBFUZZER_FLAG...]
       fuzz/run.sh --ci [SECONDS]
       fuzz/run.sh --build

Targets: ${TARGETS[*]}
(fuzz/<target>_fuzzer.cc; seeds in fuzz/corpus/<target>/).

TARGET|all SECONDS
    Builds the fuzzer(s), then runs each in turn for SECONDS, one process on one core. New
    inputs collect in state/fuzz/<target>/corpus/ (kept between runs; the committed seeds are
    read too), crashes and their reproducers go to state/fuzz/<target>/ (crash-*, leak-*,
    timeout-*, oom-*) and libFuzzer's output to state/fuzz/<target>/run.log. Prints per target
    the executions, the coverage (edges of PRL's code), the corpus and the crashes found.
    Flags after SECONDS go to libFuzzer (e.g. -seed=N, -max_len=N).
--ci [SECONDS]
    Builds every fuzzer and runs each for SECONDS (default 5) on a fresh copy of its seeds,
    printing one line per fuzzer in the form of Bazel's test summary, e.g.
      //fuzz:tensor_fuzzer    PASSED in 5.2s (40321 execs, corpus 312 inputs)
    which scripts/test.sh counts. Reproducers of failures are copied to state/fuzz/<target>/.
    Exits 1 when any fuzzer fails or does not build.
--build
    Only builds the fuzzers.

Reproduce a crash: ${BIN}/<target>_fuzzer state/fuzz/<target>/crash-...
(the default build's //fuzz:<target>_fuzzer, without libFuzzer, takes the same file).
Bazel runs in the output base ${OUTPUT_BASE} (PRL_FUZZ_OUTPUT_BASE) with a server of its own,
stopped after 10 idle minutes.
USAGE
}

log() { printf '[fuzz] %s\n' "$*" >&2; }

bazel_fuzz() {
  bazel --output_base="${OUTPUT_BASE}" --max_idle_secs=600 "$@"
}

# build TARGET...: builds the fuzzers; returns Bazel's status.
build() {
  local t labels=()
  for t in "$@"; do labels+=("//fuzz:${t}_fuzzer"); done
  log "bazel build --config=fuzz ${labels[*]}"
  bazel_fuzz build --config=fuzz "${labels[@]}"
}

# run_one TARGET SECONDS CORPUS_DIR OUT_DIR [FLAG...]: runs one fuzzer for SECONDS, new inputs
# to CORPUS_DIR, reproducers and run.log to OUT_DIR; returns libFuzzer's status.
run_one() {
  local target="$1" seconds="$2" corpus="$3" out="$4"
  shift 4
  mkdir -p "${corpus}" "${out}"
  local flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [[ -f "fuzz/${target}.dict" ]]; then flags+=("-dict=fuzz/${target}.dict"); fi
  # ASan: abort on an error, so that libFuzzer writes the input out; malloc returns null for
  # an impossible size as glibc's does (HDF5 reads sizes from the file and copes; operator new
  # still fails the run). TMPDIR: the targets' scratch files (fuzz/temp_file.h), in memory when
  # /dev/shm is there.
  TMPDIR="${SCRATCH}" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=${ROOT}/fuzz/lsan.supp:print_suppressions=0}" \
    "${BIN}/${target}_fuzzer" "${flags[@]}" -max_total_time="${seconds}" \
    -artifact_prefix="${out}/" "$@" "${corpus}" "fuzz/corpus/${target}" \
    >"${out}/run.log" 2>&1
}

# stat_of LOG NAME: a number from libFuzzer's final stats ("stat::NAME: N"), or 0.
stat_of() {
  local n
  n="$(sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -n1)"
  printf '%s\n' "${n:-0}"
}

# done_of LOG NAME: a field of libFuzzer's last status line ("cov: 466", "corp: 202/16Kb").
done_of() {
  local v
  v="$(grep -E '^#[0-9]+' "$1" | tail -n1 | sed -n "s/.* $2: \([^ ]*\).*/\1/p")"
  printf '%s\n' "${v:-?}"
}

# reproducers DIR: the crash, leak, timeout and OOM inputs libFuzzer wrote to DIR.
reproducers() {
  find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \)
}

human_bytes() {
  local b="$1"
  if ((b >= 1048576)); then
    printf '%d.%d MiB' $((b / 1048576)) $((b % 1048576 * 10 / 1048576))
  elif ((b >= 1024)); then
    printf '%d KiB' $((b / 1024))
  else
    printf '%d B' "${b}"
  fi
}

# run_targets SECONDS TARGET... [-- FLAG...]: the long runs, one target after the other.
run_targets() {
  local seconds="$1" t
  shift
  local targets=() flags=()
  while [[ $# -gt 0 && "$1" != -- ]]; do
    targets+=("$1")
    shift
  done
  if [[ $# -gt 0 ]]; then
    shift
    flags=("$@")
  fi
  local failed=0
  for t in "${targets[@]}"; do
    local dir="state/fuzz/${t}" status=0 start elapsed execs inputs bytes
    log "${t}: ${seconds} s (libFuzzer's output: ${dir}/run.log)"
    start="$(date +%s)"
    run_one "${t}" "${seconds}" "${dir}/corpus" "${dir}" "${flags[@]}" || status=$?
    elapsed=$(($(date +%s) - start))
    ((elapsed > 0)) || elapsed=1
    execs="$(stat_of "${dir}/run.log" number_of_executed_units)"
    inputs="$(find "${dir}/corpus" -type f | wc -l)"
    bytes="$(du -sb "${dir}/corpus" | cut -f1)"
    local corp
    corp="$(done_of "${dir}/run.log" corp)"
    printf '%s: %s execs in %s s (%s/s), coverage %s edges, corpus %s inputs (%s; %s files' \
      "${t}" "${execs}" "${elapsed}" $((execs / elapsed)) "$(done_of "${dir}/run.log" cov)" \
      "${corp%%/*}" "${corp#*/}" "${inputs}"
    printf ' in %s, %s),' "${dir}/corpus" "$(human_bytes "${bytes}")"
    printf ' crashes %s\n' "$(reproducers "${dir}" | wc -l)"
    if [[ "${status}" -ne 0 ]]; then
      failed=1
      log "${t}: FAILED (exit ${status}):"
      grep -E '^SUMMARY: |Check failed|^==[0-9]+==ERROR' "${dir}/run.log" | head -n5 >&2 || true
    fi
  done
  return "${failed}"
}

# run_ci SECONDS: every fuzzer for SECONDS on fresh seeds, as Bazel-style summary lines.
run_ci() {
  local seconds="$1" scratch="${SCRATCH}/ci" t
  if ! build "${TARGETS[@]}" >&2; then
    for t in "${TARGETS[@]}"; do printf '%-60s FAILED TO BUILD\n' "//fuzz:${t}_fuzzer"; done
    return 1
  fi
  local failed=0
  for t in "${TARGETS[@]}"; do
    local out="${scratch}/${t}" status=0 start ms execs
    start="$(date +%s%N)"
    local extra=()
    # the dataset target replays its committed corpus only: HDF5 itself can spend unbounded
    # time on some damaged files (fuzz/findings/, docs/operations.md), which random mutation
    # finds within seconds now and then; the 10-minute runs still mutate it
    if [[ "${t}" == dataset ]]; then extra=(-runs=0); fi
    run_one "${t}" "${seconds}" "${out}/corpus" "${out}" "${extra[@]}" || status=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    execs="$(stat_of "${out}/run.log" number_of_executed_units)"
    if [[ "${status}" -eq 0 && "${execs}" -gt 0 ]]; then
      printf '%-60s PASSED in %d.%ds (%s execs, corpus %s new inputs)\n' "//fuzz:${t}_fuzzer" \
        $((ms / 1000)) $((ms % 1000 / 100)) "${execs}" "$(find "${out}/corpus" -type f | wc -l)"
    else
      failed=1
      printf '%-60s FAILED in %d.%ds\n' "//fuzz:${t}_fuzzer" $((ms / 1000)) $((ms % 1000 / 100))
      mkdir -p "state/fuzz/${t}"
      cp "${out}/run.log" "state/fuzz/${t}/ci.log"
      reproducers "${out}" | xargs -r cp -t "state/fuzz/${t}/"
      grep -E '^SUMMARY: |Check failed|^==[0-9]+==ERROR' "${out}/run.log" | head -n5 |
        sed 's/^/[fuzz]   /' >&2 || true
      log "${t}: exit ${status}; log and reproducers in state/fuzz/${t}/"
    fi
  done
  return "${failed}"
}

main() {
  # Scratch space for the targets' files and --ci's corpora, removed at exit.
  local shm=/dev/shm
  [[ -d "${shm}" && -w "${shm}" ]] || shm="${TMPDIR:-/tmp}"
  SCRATCH="$(mktemp -d "${shm}/prl-fuzz.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the path is fixed.
  trap "rm -rf '${SCRATCH}'" EXIT
  case "${1:-}" in
    -h | --help) usage ;;
    --build) build "${TARGETS[@]}" ;;
    --ci)
      local seconds="${2:-5}"
      [[ "${seconds}" =~ ^[0-9]+$ ]] || {
        usage >&2
        exit 2
      }
      run_ci "${seconds}"
      ;;
    *)
      local target="${1:-}" seconds="${2:-}"
      if [[ $# -lt 2 || ! "${seconds}" =~ ^[0-9]+$ ]]; then
        usage >&2
        exit 2
      fi
      shift 2
      local targets=()
      if [[ "${target}" == all ]]; then
        targets=("${TARGETS[@]}")
      elif [[ " ${TARGETS[*]} " == *" ${target%_fuzzer} "* ]]; then
        targets=("${target%_fuzzer}")
      else
        log "unknown target: ${target}"
        usage >&2
        exit 2
      fi
      build "${targets[@]}"
      run_targets "${seconds}" "${targets[@]}" -- "$@"
      ;;
  esac
}

main "$@"
