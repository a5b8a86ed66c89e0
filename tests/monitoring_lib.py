"""Helpers shared by PRL's monitoring tests (monitoring_config_test, monitoring_e2e_test).

- metric_names(expr): the metric names a PromQL expression selects (no PromQL parser needed:
  strings, label matchers, ranges and grouping clauses are cut out first).
- selectors_with_matchers(expr) and without_negative_matchers(selector): the selectors of
  an alert rule that must match some series.
- dashboard_queries(dashboard) and substitute(expr, variables): every query of a Grafana
  dashboard and its text with Grafana's template variables replaced.
- kubernetes_config_as_file_sd(text, ...): deploy/prometheus/prometheus-kubernetes.yml with
  its kubernetes_sd_configs replaced by a file_sd_configs block, for Debian's Prometheus, which
  is built without Kubernetes discovery. The relabeling is kept as it is, so a file of targets
  carrying the __meta_kubernetes_* labels a pod would have exercises it.
"""
import re

# PromQL words that are neither metric names nor function calls.
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr):
    """The metric names `expr` selects, e.g. {'prl_learner_updates_total', 'up'}."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = _GROUPING.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        token = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token in _KEYWORDS:
            continue
        names.add(token)
    return names


def selectors_with_matchers(expr):
    """The vector selectors of `expr` that have label matchers, e.g.
    ['prl_learner_experiments{state="failed"}']."""
    return [m.group(0) for m in
            re.finditer(r'(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\}',
                        expr)]


def without_negative_matchers(selector):
    """`selector` with its != and !~ matchers left out, e.g.
    'a{x="1",code!~"OK|NOT_FOUND"}' -> 'a{x="1"}' and 'a{code!="OK"}' -> 'a'. Negative matchers
    filter out what is normal (errors other than the caller's), so on a healthy cluster they may
    rightly match nothing; the rest of the selector must still match some series."""
    m = re.match(r'([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\}$', selector, re.S)
    if not m:
        return selector
    matchers = re.findall(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")',
                          m.group(2))
    kept = [f"{label}{op}{value}" for label, op, value in matchers if op in ("=", "=~")]
    return m.group(1) + ("{" + ",".join(kept) + "}" if kept else "")


def dashboard_panels(dashboard):
    """Every panel of a dashboard, rows' nested panels included, rows excluded."""
    out = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def dashboard_queries(dashboard):
    """(panel title, refId, expr, instant) for every query of every panel."""
    out = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((panel.get("title", ""), target.get("refId", ""), target.get("expr", ""),
                        bool(target.get("instant", False))))
    return out


def substitute(expr, variables):
    """`expr` with Grafana's $name, ${name}, ${name:format} and [[name]] replaced from
    `variables` (a dict). Raises KeyError naming a variable it does not know."""

    def value(name):
        if name not in variables:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]

    s = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: value(m.group(1)), expr)
    s = re.sub(r"\[\[(\w+)\]\]", lambda m: value(m.group(1)), s)
    s = re.sub(r"\$(\w+)", lambda m: value(m.group(1)), s)
    return s


def kubernetes_config_as_file_sd(text, targets_file, scrape_interval=None, rules_file=None):
    """The Kubernetes scrape configuration `text` with each kubernetes_sd_configs block
    replaced by file_sd_configs reading `targets_file`; with `scrape_interval` (e.g. "1s") the
    global intervals, with `rules_file` the rule file, replaced too."""
    lines = text.splitlines()
    out = []
    i = 0
    replaced = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)kubernetes_sd_configs:\s*$", line)
        if not m:
            out.append(line)
            i += 1
            continue
        indent = len(m.group(1))
        out.append(" " * indent + "file_sd_configs:")
        out.append(" " * indent + f"  - files: ['{targets_file}']")
        out.append(" " * indent + "    refresh_interval: 1s")
        replaced += 1
        i += 1
        # the block's own lines are indented deeper (or are list items at the same indent).
        while i < len(lines):
            nxt = lines[i]
            stripped = nxt.strip()
            depth = len(nxt) - len(nxt.lstrip())
            if stripped and (depth < indent or (depth == indent and not stripped.startswith("- "))):
                break
            i += 1
    if replaced == 0:
        raise ValueError("no kubernetes_sd_configs block in the configuration")
    result = "\n".join(out) + "\n"
    if scrape_interval is not None:
        result = re.sub(r"(?m)^(\s*(?:scrape|evaluation)_interval:)\s*\S+", rf"\1 {scrape_interval}",
                        result)
    if rules_file is not None:
        result = re.sub(r"(?m)^(rule_files:\s*\n\s*-\s*)\S+", rf"\g<1>'{rules_file}'", result)
    return result


def kubernetes_pod_target(address, component, metrics_port, pod, scrape="true", part_of="prl",
                          phase="Running", namespace="prl", container=None):
    """A file_sd target group carrying the labels Kubernetes pod discovery would give a pod."""
    return {
        "targets": [address],
        "labels": {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_container_name": container or component,
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": part_of,
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_port": str(metrics_port),
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
        },
    }


def exported_metric_names(text):
    """Metric names a /metrics page (Prometheus text format) exports: every sample's name, and
    every declared family (# TYPE) with the series names of its type, so that a family with no
    series yet (an error counter before the first error) counts as exported."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                name, kind = parts[2], parts[3]
                names.add(name)
                if kind == "histogram":
                    names.update({name + "_bucket", name + "_sum", name + "_count"})
                elif kind == "summary":
                    names.update({name + "_sum", name + "_count"})
            continue
        if line.startswith("#"):
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            names.add(m.group(0))
    return names
