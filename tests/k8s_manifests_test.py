#!/usr/bin/env python3
"""Checks PRL's Kubernetes manifests (deploy/k8s/: a kustomize base and its overlays) without a
cluster:

  - renders the base and every overlay with `kubectl kustomize` (kustomize v4 or later), from a
    copy of deploy/k8s/ with a test token in base/auth-token (the git-ignored file the token
    Secret is generated from; without it rendering must fail). scripts/setup.sh installs no
    kubectl (Debian 12 has none with kustomize v4), so where there is none the manifests are
    rendered by a small subset of kustomize here instead (resources, namespace, images,
    replicas, ConfigMap and Secret generators; no patches): the checks then run on that, and
    the ones that need the overlays' patches are skipped, with a note saying so;
  - validates every rendered object against the Kubernetes 1.32 schema, strictly (unknown
    fields fail), with PyPI's kubernetes-validate when the repo's virtualenv has it
    (scripts/setup.sh --venv); otherwise says that schema validation was skipped;
  - consistency, in every rendering:
      * one Namespace, every other object in it, and it is the namespace
        deploy/prometheus/prometheus-kubernetes.yml discovers pods in;
      * workloads: selectors match their pod labels; pods carry app.kubernetes.io/part-of and
        app.kubernetes.io/component as prometheus-kubernetes.yml keeps them (components are the
        prl-<component> jobs of deploy/prometheus/prometheus.yml); each runs its component's
        binary from /opt/prl/bin of the image prl:<tag>;
      * every Service selects the pods of one workload and its targetPorts (names or numbers)
        are declared ports of their containers; StatefulSets name an existing governing Service;
      * the flags each process reads (its --flagfile, from the ConfigMap the file's mount
        holds, then its args): --host=0.0.0.0, --port and --metrics_port (or the binary's
        default ports) declared as the container's grpc and metrics ports; the binary itself
        accepts the flags (run with --version);
      * --learner_replay names every replay pod by its DNS name under the headless Service, in
        ordinal order, one per replica, on the shards' gRPC port; --actor_learner, and
        --learner_prior_server and --learner_prior_address, name the Service of the learner and
        of the prior server and a port of it that leads to the process's gRPC port;
      * every server's --auth_token_file lies in a mounted Secret that exists and has that key
        (the token generated from base/auth-token);
      * state directories (--replay_checkpoint_dir, --learner_state_dir, --prior_model_dir) are
        on persistent volumes; every mount has its volume, every volume's ConfigMap or Secret
        exists, and each ConfigMap is mounted by one workload only;
      * startup, readiness and liveness probes are gRPC health checks on the process's gRPC
        port, a declared container port, asking for "" or a service the binary serves;
      * Prometheus annotations: scrape "true", the port a declared metrics port equal to
        --metrics_port, path /metrics;
      * every container has CPU and memory requests and limits;
  - what each overlay is for: cpu-small trains on the CPU with no GPU; gpu puts the learner on
    one nvidia.com/gpu with --learner_device=cuda, a GPU node selector and toleration, and runs
    more replay shards and actors than cpu-small.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml  # Debian's python3-yaml (python3-torch, which scripts/setup.sh installs, needs it)
except ImportError:
    yaml = None

RUNFILES = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
K8S_DIR = os.path.join(RUNFILES, "deploy", "k8s")
PROM_DIR = os.path.join(RUNFILES, "deploy", "prometheus")

# The Kubernetes version the schemas are checked against.
KUBERNETES_VERSION = "1.32"
IMAGE = "prl"
BIN_DIR = "/opt/prl/bin"
TEST_TOKEN = "k8s-manifests-test-token"

# Per component: its binary (runfile and name under BIN_DIR), the default gRPC and metrics
# ports of ServerOptionsFromFlags in its *_main.cc, and the gRPC services it registers (the
# health service answers "" and each of them).
COMPONENTS = {
    "replay": ("replay/prl_replay", 50051, 9151, {"prl.v1.ReplayService"}),
    "learner": ("learner/prl_learner", 50052, 9152,
                {"prl.v1.ExperimentService", "prl.v1.ActorService"}),
    "prior-server": ("prior_server/prl_prior_server", 50053, 9153, {"prl.v1.PriorService"}),
    "actor": ("actor/prl_actor", 50054, 9154, set()),
}
# Flags naming a directory that must survive a restart: on a persistent volume.
STATE_DIR_FLAGS = {
    "replay": "replay_checkpoint_dir",
    "learner": "learner_state_dir",
    "prior-server": "prior_model_dir",
}

failures = []
passed = 0
notes = []


def check(ok, what):
    global passed
    if ok:
        passed += 1
        print(f"ok: {what.rstrip()}")
    else:
        failures.append(what)
        print(f"FAIL: {what}")
    return ok


def note(what):
    notes.append(what)
    print(f"note: {what}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------
# Rendering


def find_kubectl():
    """(path, why): a kubectl whose built-in kustomize is v4 or later, or (None, why not)."""
    path = shutil.which("kubectl")
    if path is None:
        return None, "no kubectl on PATH (scripts/setup.sh installs none)"
    try:
        out = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=60)
        version = json.loads(out.stdout).get("kustomizeVersion", "")
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return None, f"{path} does not report its version ({e})"
    m = re.match(r"v(\d+)\.", version)
    if not m or int(m.group(1)) < 4:
        return None, f"{path} has kustomize '{version or 'unknown'}', not v4 or later"
    return path, f"{path} with kustomize {version}"


def kubectl_kustomize(kubectl, path, scratch):
    env = dict(os.environ, HOME=scratch)
    out = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True,
                         timeout=120, env=env)
    if out.returncode != 0:
        return None, out.stderr.strip() or out.stdout.strip()
    return [d for d in yaml.safe_load_all(out.stdout) if d], ""


def pod_templates(objs):
    return [o for o in objs if o.get("kind") in ("Deployment", "StatefulSet")]


def builtin_kustomize(path, skipped_patches):
    """The subset of kustomize the manifests use, without patches (counted in
    skipped_patches) and without the generators' hash suffixes."""
    k = yaml.safe_load(read(os.path.join(path, "kustomization.yaml")))
    objs = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(path, r))
        if os.path.isdir(p):
            objs += builtin_kustomize(p, skipped_patches)
        else:
            objs += [d for d in yaml.safe_load_all(read(p)) if d]
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for g in k.get(key, []):
            data = {}
            for f in g.get("files", []):
                name, _, file = f.rpartition("=")
                data[name or os.path.basename(file)] = read(os.path.join(path, file))
            for lit in g.get("literals", []):
                name, _, value = lit.partition("=")
                data[name] = value
            if kind == "Secret":
                data = {n: base64.b64encode(v.encode()).decode() for n, v in data.items()}
            existing = [o for o in objs
                        if o["kind"] == kind and o["metadata"]["name"] == g["name"]]
            behavior = g.get("behavior", "create")
            if behavior == "create":
                objs.append({"apiVersion": "v1", "kind": kind, "metadata": {"name": g["name"]},
                             "data": data})
            elif existing and behavior == "merge":
                existing[0].setdefault("data", {}).update(data)
            elif existing and behavior == "replace":
                existing[0]["data"] = data
            else:
                raise ValueError(f"{path}: {key} {g['name']}: nothing to {behavior}")
    if k.get("namespace"):
        for o in objs:
            if o["kind"] != "Namespace":
                o["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for w in pod_templates(objs):
            for c in w["spec"]["template"]["spec"].get("containers", []):
                name = re.split(r"[:@]", c["image"], maxsplit=1)[0]
                if name == image["name"]:
                    c["image"] = image.get("newName", name) + (
                        ":" + image["newTag"] if "newTag" in image else "")
    for r in k.get("replicas", []):
        for o in objs:
            if o["metadata"]["name"] == r["name"] and "replicas" in o.get("spec", {}):
                o["spec"]["replicas"] = r["count"]
    skipped_patches.extend(os.path.join(path, p.get("path", "(inline)"))
                           for p in k.get("patches", []) + k.get("patchesStrategicMerge", []))
    return objs


# ---------------------------------------------------------------------------------------------
# Schema validation (PyPI kubernetes-validate, in the repo's virtualenv)

VALIDATE_SCRIPT = r"""
import json, sys
import kubernetes_validate
objs = json.load(open(sys.argv[1]))
errors = []
for obj in objs:
    try:
        kubernetes_validate.validate(obj, sys.argv[2], strict=True)
        errors.append(None)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        errors.append(f"{e.message} at {where}")
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
print(json.dumps(errors))
"""


def find_venv_python():
    """The virtualenv python with kubernetes_validate, or (None, why not). The virtualenv is
    .venv at the repository root, found beside the source of a runfile (runfiles link to the
    source tree when tests run locally)."""
    source = os.path.realpath(os.path.join(K8S_DIR, "base", "kustomization.yaml"))
    root = os.path.normpath(os.path.join(os.path.dirname(source), "..", "..", ".."))
    python = os.path.join(root, ".venv", "bin", "python")
    if not os.path.isfile(os.path.join(root, "deploy", "k8s", "BUILD")):
        return None, "the repository root is not reachable from the runfiles"
    if not os.access(python, os.X_OK):
        return None, "no .venv at the repository root (scripts/setup.sh --venv creates it)"
    out = subprocess.run([python, "-c", "import kubernetes_validate"], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        return None, (".venv has no kubernetes-validate (scripts/setup.sh --venv installs it, "
                      "or .venv/bin/pip install kubernetes-validate)")
    return python, ".venv/bin/python with kubernetes-validate"


def validate_schemas(python, renderings, scratch):
    objs = [(target, o) for target, rendered in renderings.items() for o in rendered]
    path = os.path.join(scratch, "objects.json")
    with open(path, "w") as f:
        json.dump([o for _, o in objs], f)
    out = subprocess.run([python, "-c", VALIDATE_SCRIPT, path, KUBERNETES_VERSION],
                         capture_output=True, text=True, timeout=300)
    if not check(out.returncode == 0,
                 "kubernetes-validate ran\n" + (out.stderr[-2000:] if out.returncode else "")):
        return
    for (target, o), error in zip(objs, json.loads(out.stdout)):
        check(error is None, f"{target}: {o['kind']}/{o['metadata']['name']} is a valid "
              f"Kubernetes {KUBERNETES_VERSION} object (strict){': ' + error if error else ''}")


# ---------------------------------------------------------------------------------------------
# Consistency


def parse_flags(text, where):
    """The flags of an Abseil flag file or argument list, as {name: value}; later ones win."""
    flags = {}
    for line in text.splitlines() if isinstance(text, str) else text:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--"):
            check(False, f"{where}: '{line}' is not a --flag")
            continue
        name, eq, value = line[2:].partition("=")
        flags[name] = value if eq else "true"
    return flags


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def split_address(address):
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else None


def dns_names(host, namespace):
    """(pod, service) a cluster DNS name stands for: service[.ns[.svc[.cluster.local]]] or
    pod.service[...]; pod is None for a Service. None for other names."""
    parts = host.split(".")
    for suffix in ([namespace, "svc", "cluster", "local"], [namespace, "svc"], [namespace]):
        if len(parts) > len(suffix) and parts[-len(suffix):] == suffix:
            parts = parts[:-len(suffix)]
            break
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def quantity(q):
    """A Kubernetes CPU or memory quantity as a float (cores, bytes)."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    if not m:
        return None
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2 ** 10,
             "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
    return float(m.group(1)) * units[m.group(2)] if m.group(2) in units else None


def prometheus_expectations():
    """What deploy/prometheus expects of a PRL pod: the namespaces it discovers, the
    part-of label value and scrape annotation value it keeps, the annotation keys (sanitized as
    Prometheus does), and the components (jobs prl-<component> of prometheus.yml)."""
    k8s = yaml.safe_load(read(os.path.join(PROM_DIR, "prometheus-kubernetes.yml")))
    job = k8s["scrape_configs"][0]
    namespaces = set(job["kubernetes_sd_configs"][0].get("namespaces", {}).get("names", []))
    keep = {}
    for r in job["relabel_configs"]:
        if r.get("action") == "keep":
            keep[r["source_labels"][0]] = r["regex"]
    local = yaml.safe_load(read(os.path.join(PROM_DIR, "prometheus.yml")))
    components = {c["job_name"][len("prl-"):] for c in local["scrape_configs"]
                  if c["job_name"].startswith("prl-")}
    return namespaces, keep, components


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


class Rendering:
    """One rendered target (the base or an overlay) and what its checks need."""

    def __init__(self, target, objs, patched):
        self.target = target
        self.objs = objs
        self.patched = patched
        self.by_kind = {}
        for o in objs:
            self.by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        self.workloads = pod_templates(objs)
        self.flags = {}  # workload name -> container name -> flags

    def kind(self, kind):
        return self.by_kind.get(kind, {})

    def component(self, w):
        return w["spec"]["template"]["metadata"].get("labels", {}).get(
            "app.kubernetes.io/component")

    def workloads_of(self, component):
        return [w for w in self.workloads if self.component(w) == component]

    def main_container(self, w):
        return w["spec"]["template"]["spec"]["containers"][0]


def mounted_file(w, container, path):
    """What `path` in `container` is: (volume, key) for a file in a mounted volume, else
    (None, None). key is the ConfigMap or Secret key it maps to."""
    spec = w["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/") + "/"
        if not path.startswith(mount):
            continue
        rel = path[len(mount):]
        v = volumes.get(m["name"])
        if v is None:
            return None, None
        if m.get("subPath"):
            return v, m["subPath"] if rel == "" else None
        source = v.get("configMap") or v.get("secret") or {}
        items = source.get("items")
        if items is not None:
            keys = [i["key"] for i in items if i["path"] == rel]
            return v, keys[0] if keys else None
        return v, rel
    return None, None


def check_rendering(r, prom, binaries_checked):
    namespaces, keep, components = prom
    t = r.target
    ns_objs = list(r.kind("Namespace").values())
    if not check(len(ns_objs) == 1, f"{t}: one Namespace ({len(ns_objs)})"):
        return
    ns = ns_objs[0]["metadata"]["name"]
    stray = [f"{o['kind']}/{o['metadata']['name']}" for o in r.objs
             if o["kind"] != "Namespace" and o["metadata"].get("namespace") != ns]
    check(not stray, f"{t}: every object is in namespace {ns} {stray or ''}")
    check(not namespaces or ns in namespaces,
          f"{t}: prometheus-kubernetes.yml discovers pods in namespace {ns} "
          f"({sorted(namespaces)})")
    for c in COMPONENTS:
        check(len(r.workloads_of(c)) == 1, f"{t}: one workload of component {c}")

    part_of = keep.get("__meta_kubernetes_pod_label_app_kubernetes_io_part_of", "prl")
    scrape = keep.get("__meta_kubernetes_pod_annotation_prometheus_io_scrape", "true")
    services = r.kind("Service")

    for w in r.workloads:
        name = f"{t}: {w['kind']}/{w['metadata']['name']}"
        tmpl = w["spec"]["template"]
        labels = tmpl["metadata"].get("labels", {})
        spec = tmpl["spec"]
        component = r.component(w)
        check(selects(w["spec"]["selector"].get("matchLabels", {}), labels),
              f"{name}: its selector matches its pod labels")
        others = [o["metadata"]["name"] for o in r.workloads if o is not w and
                  selects(w["spec"]["selector"].get("matchLabels", {}),
                          o["spec"]["template"]["metadata"].get("labels", {}))]
        check(not others, f"{name}: its selector matches no other workload's pods {others or ''}")
        check(re.fullmatch(part_of, labels.get("app.kubernetes.io/part-of", "")) is not None,
              f"{name}: pods carry app.kubernetes.io/part-of matching '{part_of}' "
              "(prometheus-kubernetes.yml keeps only those)")
        if not check(component in components and component in COMPONENTS,
                     f"{name}: app.kubernetes.io/component '{component}' is a component "
                     f"Prometheus's jobs expect {sorted(components)}"):
            continue
        runfile, default_port, default_metrics, grpc_services = COMPONENTS[component]
        binary = os.path.basename(runfile)
        if w["kind"] == "StatefulSet":
            governing = services.get(w["spec"].get("serviceName"))
            check(governing is not None and selects(governing["spec"].get("selector", {}),
                                                    labels),
                  f"{name}: its serviceName names a Service that selects its pods")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        for v in volumes.values():
            if "configMap" in v:
                check(v["configMap"]["name"] in r.kind("ConfigMap"),
                      f"{name}: volume {v['name']}'s ConfigMap {v['configMap']['name']} exists")
            if "secret" in v:
                check(v["secret"]["secretName"] in r.kind("Secret"),
                      f"{name}: volume {v['name']}'s Secret {v['secret']['secretName']} exists")
        containers = spec.get("containers", [])
        check(len(containers) == 1, f"{name}: one container")
        r.flags[w["metadata"]["name"]] = {}
        for c in containers:
            cname = f"{name} container {c['name']}"
            for m in c.get("volumeMounts", []):
                check(m["name"] in volumes or m["name"] in claims,
                      f"{cname}: mount {m['mountPath']} has its volume {m['name']}")
            check(re.fullmatch(re.escape(IMAGE) + r":[\w][\w.-]*", c.get("image", "")) is not None,
                  f"{cname}: image {c.get('image')} is {IMAGE}:<tag>")
            check(c.get("command") == [f"{BIN_DIR}/{binary}"],
                  f"{cname}: runs {BIN_DIR}/{binary} ({c.get('command')})")

            # the flags the process reads: its flag files, then its other arguments.
            flags = {}
            for arg in c.get("args", []):
                if arg.startswith("--flagfile="):
                    path = arg[len("--flagfile="):]
                    v, key = mounted_file(w, c, path)
                    cm = r.kind("ConfigMap").get((v or {}).get("configMap", {}).get("name"))
                    if check(cm is not None and key in cm.get("data", {}),
                             f"{cname}: --flagfile={path} is key {key} of a mounted ConfigMap"):
                        flags.update(parse_flags(cm["data"][key], f"{cname} {key}"))
                else:
                    flags.update(parse_flags([arg], cname))
            r.flags[w["metadata"]["name"]][c["name"]] = flags
            check(flags.get("host") == "0.0.0.0",
                  f"{cname}: --host=0.0.0.0 (gRPC and metrics on the pod IP; {flags.get('host')})")
            port = int(flags.get("port", default_port))
            metrics_port = int(flags.get("metrics_port", default_metrics))
            declared = {p["containerPort"]: p.get("name") for p in c.get("ports", [])}
            check(declared.get(port) == "grpc",
                  f"{cname}: gRPC port {port} is its declared port 'grpc' {declared}")
            check(declared.get(metrics_port) == "metrics",
                  f"{cname}: metrics port {metrics_port} is its declared port 'metrics'")
            binaries_checked.append((runfile, cname, flags))

            # the bearer token: a file in a mounted Secret, or $PRL_AUTH_TOKEN from a Secret.
            token_file = flags.get("auth_token_file")
            token_env = [e for e in c.get("env", []) if e["name"] == "PRL_AUTH_TOKEN"]
            if token_file:
                v, key = mounted_file(w, c, token_file)
                secret = r.kind("Secret").get((v or {}).get("secret", {}).get("secretName"))
                ok = secret is not None and key in secret.get("data", {})
                check(ok, f"{cname}: --auth_token_file={token_file} is key {key} of a mounted "
                      "Secret that exists")
                if ok:
                    token = base64.b64decode(secret["data"][key]).decode().strip()
                    check(token == TEST_TOKEN,
                          f"{cname}: the token Secret is generated from base/auth-token")
            else:
                ref = (token_env[0].get("valueFrom", {}).get("secretKeyRef", {})
                       if token_env else {})
                secret = r.kind("Secret").get(ref.get("name"))
                check(secret is not None and ref.get("key") in secret.get("data", {}),
                      f"{cname}: reads the bearer token (--auth_token_file or PRL_AUTH_TOKEN) "
                      "from a Secret that exists with that key")

            if component in STATE_DIR_FLAGS:
                flag = STATE_DIR_FLAGS[component]
                state = flags.get(flag, "")
                mounts = [m for m in c.get("volumeMounts", [])
                          if state and (state + "/").startswith(m["mountPath"].rstrip("/") + "/")]
                persistent = bool(mounts) and (mounts[0]["name"] in claims or
                                               "persistentVolumeClaim" in volumes.get(
                                                   mounts[0]["name"], {}))
                check(persistent, f"{cname}: --{flag}={state} is on a persistent volume")

            # probes: gRPC health on the process's gRPC port.
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if probe is None:
                    if kind != "startupProbe":  # optional: for slow starts only
                        check(False, f"{cname}: has a {kind}")
                    continue
                g = probe.get("grpc")
                if not check(g is not None, f"{cname}: {kind} is a gRPC health check"):
                    continue
                check(g["port"] in declared and g["port"] == port,
                      f"{cname}: {kind} asks port {g['port']}, its declared gRPC port {port}")
                service = g.get("service", "")
                check(service == "" or service in grpc_services,
                      f"{cname}: {kind} asks for service '{service}', which {binary} serves "
                      f"{sorted(grpc_services | {''})}")

            # requests and limits
            res = c.get("resources", {})
            for what in ("cpu", "memory"):
                req = quantity(res.get("requests", {}).get(what))
                lim = quantity(res.get("limits", {}).get(what))
                check(req is not None and lim is not None and req <= lim,
                      f"{cname}: {what} request {res.get('requests', {}).get(what)} within "
                      f"limit {res.get('limits', {}).get(what)}")

            # Prometheus: the annotations prometheus-kubernetes.yml reads.
            ann = {sanitize(k): v for k, v in tmpl["metadata"].get("annotations", {}).items()}
            check(re.fullmatch(scrape, ann.get("prometheus_io_scrape", "")) is not None,
                  f"{cname}: annotation prometheus.io/scrape matches '{scrape}'")
            ann_port = ann.get("prometheus_io_port", "")
            check(ann_port.isdigit() and declared.get(int(ann_port)) == "metrics" and
                  int(ann_port) == metrics_port,
                  f"{cname}: annotation prometheus.io/port {ann_port!r} is its declared metrics "
                  f"port {metrics_port}")
            check(ann.get("prometheus_io_path", "/metrics") == "/metrics",
                  f"{cname}: annotation prometheus.io/path is /metrics")

    # one ConfigMap of flags per workload: changing one binary's flags restarts only its pods.
    users = {}
    for w in r.workloads:
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in v:
                users.setdefault(v["configMap"]["name"], []).append(w["metadata"]["name"])
    for cm, ws in sorted(users.items()):
        check(len(ws) == 1, f"{t}: ConfigMap {cm} is mounted by one workload {ws}")

    # Services: select one workload's pods; target ports are declared on them.
    for s in services.values():
        name = f"{t}: Service/{s['metadata']['name']}"
        selector = s["spec"].get("selector", {})
        selected = [w for w in r.workloads
                    if selects(selector, w["spec"]["template"]["metadata"].get("labels", {}))]
        if not check(len(selected) == 1, f"{name}: selects the pods of one workload "
                     f"({[w['metadata']['name'] for w in selected]})"):
            continue
        for p in s["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            for c in selected[0]["spec"]["template"]["spec"]["containers"]:
                ports = c.get("ports", [])
                found = [q for q in ports if target in (q.get("name"), q["containerPort"])]
                check(bool(found), f"{name}: port {p['port']} -> targetPort {target!r} is "
                      f"declared on {selected[0]['metadata']['name']}'s {c['name']} container")

    check_addresses(r, ns)


def service_port_target(r, s, port):
    """The container port a Service port leads to (on its selected workload's container)."""
    for p in s["spec"].get("ports", []):
        if p["port"] != port:
            continue
        target = p.get("targetPort", port)
        for w in r.workloads:
            if selects(s["spec"].get("selector", {}),
                       w["spec"]["template"]["metadata"].get("labels", {})):
                for c in w["spec"]["template"]["spec"]["containers"]:
                    for q in c.get("ports", []):
                        if target in (q.get("name"), q["containerPort"]):
                            return q["containerPort"]
    return None


def check_addresses(r, ns):
    """--actor_learner, --learner_prior_server, --learner_prior_address and --learner_replay name
    the Services (or StatefulSet pod DNS names) of the right workload and its gRPC port."""
    t = r.target
    services = r.kind("Service")

    def grpc_port(component):
        ws = r.workloads_of(component)
        if not ws:
            return None
        flags = r.flags.get(ws[0]["metadata"]["name"], {})
        f = next(iter(flags.values()), {})
        return int(f.get("port", COMPONENTS[component][1]))

    def flags_of(component):
        ws = r.workloads_of(component)
        if not ws:
            return {}
        return next(iter(r.flags.get(ws[0]["metadata"]["name"], {}).values()), {})

    def service_address(flag, value, component):
        where = f"{t}: --{flag}={value}"
        host, port = split_address(value)
        names = dns_names(host, ns)
        s = services.get(names[1]) if names and names[0] is None else None
        if not check(s is not None, f"{where} names a Service"):
            return
        selected = [w for w in r.workloads
                    if selects(s["spec"].get("selector", {}),
                               w["spec"]["template"]["metadata"].get("labels", {}))]
        check([r.component(w) for w in selected] == [component],
              f"{where}: Service {names[1]} selects the {component} pods")
        check(s["spec"].get("clusterIP") != "None",
              f"{where}: Service {names[1]} has a cluster IP (one address for the client)")
        target = service_port_target(r, s, port)
        check(target is not None and target == grpc_port(component),
              f"{where}: Service port {port} leads to the {component}'s gRPC port "
              f"{grpc_port(component)} ({target})")

    learner = flags_of("learner")
    service_address("actor_learner", flags_of("actor").get("actor_learner", ""), "learner")
    # the learner pushes models to the prior server (no shared volume), and tells actors where
    # it is (its default, 127.0.0.1:50053, is no address in a pod).
    for flag in ("learner_prior_server", "learner_prior_address"):
        if check(bool(learner.get(flag)), f"{t}: the learner sets --{flag}"):
            service_address(flag, learner[flag], "prior-server")

    # --learner_replay: every replay pod, by ordinal, under the headless Service.
    replay = r.workloads_of("replay")
    if not replay:
        return
    sts = replay[0]
    replicas = sts["spec"].get("replicas", 1)
    addresses = [a for a in learner.get("learner_replay", "").split(",") if a.strip()]
    where = f"{t}: --learner_replay"
    expected_port = grpc_port("replay")
    check(len(addresses) == replicas,
          f"{where} lists {len(addresses)} shards, StatefulSet {sts['metadata']['name']} "
          f"runs {replicas}")
    for i, a in enumerate(addresses):
        host, port = split_address(a.strip())
        names = dns_names(host, ns)
        ok = names is not None and names[0] is not None
        pod, svc = names if ok else (None, None)
        check(ok and pod == f"{sts['metadata']['name']}-{i}",
              f"{where} entry {i} ({a}) is pod {sts['metadata']['name']}-{i} (ordinal order)")
        s = services.get(svc)
        check(s is not None and s["spec"].get("clusterIP") == "None" and
              sts["spec"].get("serviceName") == svc,
              f"{where} entry {i}: {svc} is the StatefulSet's headless governing Service")
        check(port == expected_port,
              f"{where} entry {i}: port {port} is the shards' gRPC port {expected_port}")


def check_overlay_purpose(renderings):
    def learner(r):
        w = r.workloads_of("learner")[0]
        c = r.main_container(w)
        return w, c, r.flags[w["metadata"]["name"]][c["name"]]

    def replicas(r, component):
        return r.workloads_of(component)[0]["spec"].get("replicas", 1)

    small, gpu = renderings.get("overlays/cpu-small"), renderings.get("overlays/gpu")
    if not check(small is not None and gpu is not None,
                 "the overlays cpu-small and gpu exist and rendered"):
        return
    _, c, flags = learner(small)
    check(flags.get("learner_device") == "cpu", "cpu-small: --learner_device=cpu")
    gpus = [w["metadata"]["name"] for w in small.workloads for k in ("requests", "limits")
            if "nvidia.com/gpu" in small.main_container(w).get("resources", {}).get(k, {})]
    check(not gpus, f"cpu-small: nothing asks for a GPU {gpus or ''}")
    w, c, flags = learner(gpu)
    check(flags.get("learner_device", "").startswith("cuda"), "gpu: --learner_device=cuda")
    check(replicas(gpu, "replay") > replicas(small, "replay"),
          f"gpu: more replay shards ({replicas(gpu, 'replay')}) than cpu-small")
    check(replicas(gpu, "actor") > replicas(small, "actor"),
          f"gpu: more actors ({replicas(gpu, 'actor')}) than cpu-small")
    if not gpu.patched:
        note("gpu: the learner's GPU limit, node selector and toleration come from patches, "
             "which the built-in rendering does not apply: not checked")
        return
    spec = w["spec"]["template"]["spec"]
    check(str(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) == "1",
          "gpu: the learner's limits include nvidia.com/gpu: 1")
    check(bool(spec.get("nodeSelector")) and any(
        "gpu" in t.get("key", "") for t in spec.get("tolerations", [])),
        "gpu: the learner has a GPU node selector and tolerates the GPU taint")


def check_flags_with_binaries(binaries_checked, scratch):
    """Each binary accepts the flags it is given (flag names and values parse): run with
    --version, which exits after parsing."""
    seen = set()
    for runfile, where, flags in binaries_checked:
        path = os.path.join(RUNFILES, runfile)
        args = [f"--{k}={v}" for k, v in sorted(flags.items())]
        key = (runfile, tuple(args))
        if key in seen:
            continue
        seen.add(key)
        if not os.path.isfile(path):
            note(f"{runfile} is not a runfile: its flags were not checked by the binary")
            continue
        flagfile = os.path.join(scratch, f"flags-{len(seen)}")
        with open(flagfile, "w") as f:
            f.write("\n".join(args) + "\n")
        out = subprocess.run([path, f"--flagfile={flagfile}", "--version"], capture_output=True,
                             text=True, timeout=120)
        check(out.returncode == 0, f"{os.path.basename(runfile)} accepts the flags of {where}\n"
              + ((out.stdout + out.stderr)[-1000:] if out.returncode else ""))


def main():
    if yaml is None:
        print("SKIPPED: no PyYAML (Debian's python3-yaml) for python3; nothing was checked")
        return 0
    scratch = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    try:
        return run(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch):
    tree = os.path.join(scratch, "k8s")
    shutil.copytree(K8S_DIR, tree)  # follows the runfiles' links: a writable copy
    for dirpath, _, _ in os.walk(tree):
        os.chmod(dirpath, 0o755)
    targets = ["base"] + sorted(os.path.join("overlays", d)
                                for d in os.listdir(os.path.join(tree, "overlays")))

    kubectl, why = find_kubectl()
    if kubectl:
        print(f"rendering with {why}")
        # without the token file the Secret cannot be generated: nothing deploys without a token.
        objs, error = kubectl_kustomize(kubectl, os.path.join(tree, "base"), scratch)
        check(objs is None and "auth-token" in error,
              "rendering without base/auth-token fails, naming the file")
    else:
        note(f"{why}: rendering with the built-in subset of kustomize instead (no patches, no "
             "hash suffixes); install kubectl with kustomize v4+ for the full check")
    with open(os.path.join(tree, "base", "auth-token"), "w") as f:
        f.write(TEST_TOKEN + "\n")

    renderings = {}
    for target in targets:
        path = os.path.join(tree, target)
        if kubectl:
            objs, error = kubectl_kustomize(kubectl, path, scratch)
            patched = True
        else:
            skipped = []
            try:
                objs, error = builtin_kustomize(path, skipped), ""
            except (OSError, ValueError, KeyError, yaml.YAMLError) as e:
                objs, error = None, str(e)
            patched = not skipped
            if skipped:
                note(f"{target}: {len(skipped)} patch file(s) not applied")
        if check(objs is not None, f"{target} renders\n{error}"):
            renderings[target] = Rendering(target, objs, patched)
            print(f"  {target}: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}"
                                              for o in objs))

    python, why = find_venv_python()
    if python:
        print(f"schema validation with {why}, Kubernetes {KUBERNETES_VERSION}")
        validate_schemas(python, {t: r.objs for t, r in renderings.items()}, scratch)
    else:
        note(f"schema validation SKIPPED: {why}; running the consistency checks only")

    prom = prometheus_expectations()
    binaries_checked = []
    for r in renderings.values():
        check_rendering(r, prom, binaries_checked)
    check_overlay_purpose(renderings)
    check_flags_with_binaries(binaries_checked, scratch)

    print(f"{passed} passed, {len(failures)} failed")
    for n in notes:
        print("note: " + n)
    for f in failures:
        print("  - " + f.splitlines()[0])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
