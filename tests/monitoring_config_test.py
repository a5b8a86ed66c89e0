#!/usr/bin/env python3
"""Checks PRL's monitoring files without a cluster (fast, offline):

  - promtool check config: deploy/prometheus/prometheus.yml, and prometheus-kubernetes.yml
    (as it is where promtool has Kubernetes discovery; Debian's has none, so there with its
    discovery swapped for file_sd and the relabeling checked as written);
  - promtool check rules alerts.yml, and promtool test rules alerts_test.yml, which must test
    every alert both quiet and firing;
  - every alert has a runbook anchor that exists in docs/dashboards.md;
  - deploy/grafana/prl.json is what generate_dashboard.py writes, is a well-formed dashboard
    (schema version, data source and experiment variables, unique ids, panels on the grid
    without overlaps, every query on the data source variable), and docs/dashboards.md
    describes every row and panel;
  - alerts and panels name only prl_* metrics and Prometheus's `up`
    (//tests:monitoring_e2e_test checks them against what the processes really export).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

RUNFILES = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
sys.path.insert(0, os.path.join(RUNFILES, "tests"))
import monitoring_lib  # noqa: E402

PROM_DIR = os.path.join(RUNFILES, "deploy", "prometheus")
GRAFANA_DIR = os.path.join(RUNFILES, "deploy", "grafana")


def find_doc():
    """docs/dashboards.md: a runfile when the root package exports it, otherwise found beside
    the source of a runfile (runfiles link to the source tree when tests run locally); None
    when neither (the doc checks are then skipped)."""
    candidates = [os.path.join(RUNFILES, "docs", "dashboards.md")]
    source = os.path.realpath(os.path.join(PROM_DIR, "alerts.yml"))
    candidates.append(os.path.join(os.path.dirname(source), "..", "..", "docs", "dashboards.md"))
    for c in candidates:
        if os.path.isfile(c):
            return os.path.normpath(c)
    return None


DOC = find_doc()

failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
        print(f"ok: {what.rstrip()}")
    else:
        failures.append(what)
        print(f"FAIL: {what}")


def promtool(*args, cwd=None):
    tool = shutil.which("promtool") or "/usr/bin/promtool"
    out = subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    return out.returncode, out.stdout + out.stderr


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def anchor(heading):
    """GitHub's anchor of a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def check_prometheus(scratch):
    rc, out = promtool("check", "config", "prometheus.yml", cwd=PROM_DIR)
    check(rc == 0, "promtool check config prometheus.yml\n" + (out if rc else ""))

    k8s = os.path.join(PROM_DIR, "prometheus-kubernetes.yml")
    rc, out = promtool("check", "config", k8s, cwd=PROM_DIR)
    if rc != 0 and "kubernetes_sd_configs not found" in out:
        print("note: this promtool has no Kubernetes discovery (Debian's); checking "
              "prometheus-kubernetes.yml with file_sd in its place")
        targets = os.path.join(scratch, "targets.json")
        with open(targets, "w") as f:
            f.write("[]\n")
        converted = os.path.join(scratch, "prometheus-kubernetes.yml")
        with open(converted, "w") as f:
            f.write(monitoring_lib.kubernetes_config_as_file_sd(
                read(k8s), targets, rules_file=os.path.join(PROM_DIR, "alerts.yml")))
        rc, out = promtool("check", "config", converted)
    check(rc == 0, "promtool check config prometheus-kubernetes.yml\n" + (out if rc else ""))

    rc, out = promtool("check", "rules", "alerts.yml", cwd=PROM_DIR)
    check(rc == 0, "promtool check rules alerts.yml\n" + (out if rc else ""))
    rc, out = promtool("test", "rules", "alerts_test.yml", cwd=PROM_DIR)
    check(rc == 0, "promtool test rules alerts_test.yml\n" + (out if rc else ""))

    rules = read(os.path.join(PROM_DIR, "alerts.yml"))
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M)
    check(len(alerts) >= 8, f"alerts.yml has {len(alerts)} alerts")
    # each eval_time block of the unit tests: which alert, quiet or firing.
    tests = read(os.path.join(PROM_DIR, "alerts_test.yml"))
    firing, quiet = set(), set()
    for block in re.split(r"\n\s*- eval_time:", tests)[1:]:
        name = re.search(r"alertname:\s*(\S+)", block)
        if not name:
            continue
        if re.search(r"exp_alerts:\s*\[\]", block):
            quiet.add(name.group(1))
        elif "exp_labels" in block:
            firing.add(name.group(1))
    for a in alerts:
        check(a in firing and a in quiet,
              f"alerts_test.yml tests {a} firing ({a in firing}) and quiet ({a in quiet})")

    # runbooks point at docs/dashboards.md headings.
    doc = read(DOC) if DOC else ""
    anchors = {anchor(h) for h in re.findall(r"^#+\s+(.*)$", doc, re.M)}
    runbooks = re.findall(r"^\s*runbook:\s*(\S+)", rules, re.M)
    check(len(runbooks) == len(alerts), f"every alert has a runbook ({len(runbooks)} of "
          f"{len(alerts)})")
    for r in runbooks:
        path, _, frag = r.partition("#")
        check(path == "docs/dashboards.md" and (frag in anchors or not DOC),
              f"runbook {r} is a heading of docs/dashboards.md")

    # metric names: PRL's or Prometheus's `up`.
    for expr in re.findall(r"^\s*expr:\s*(?:>-\s*)?\n?((?:.|\n)*?)(?=\n\s*(?:for|labels):)",
                           rules, re.M):
        names = monitoring_lib.metric_names(expr)
        bad = sorted(n for n in names if not n.startswith("prl_") and n != "up")
        check(names and not bad, f"alert expression names PRL metrics only {sorted(names)}: "
              f"{' '.join(expr.split())[:80]}")


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
            a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check_dashboard():
    out = subprocess.run([sys.executable, os.path.join(GRAFANA_DIR, "generate_dashboard.py"),
                          "--check"], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "prl.json is what generate_dashboard.py writes\n" +
          (out.stdout + out.stderr if out.returncode else ""))

    d = json.loads(read(os.path.join(GRAFANA_DIR, "prl.json")))
    check(d.get("schemaVersion", 0) >= 36, f"schemaVersion {d.get('schemaVersion')}")
    check(d.get("uid") and d.get("title"), "dashboard has a uid and a title")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "a Prometheus data source variable")
    exp = variables.get("experiment", {})
    check(exp.get("type") == "query" and
          exp.get("datasource", {}).get("uid") == "${datasource}" and
          "label_values(" in json.dumps(exp.get("query")),
          "an experiment variable from label_values on the data source variable")

    ids = [p["id"] for p in d["panels"]] + [
        c["id"] for p in d["panels"] if p["type"] == "row" for c in p.get("panels", [])]
    check(len(ids) == len(set(ids)), "panel ids are unique")
    grid = [p["gridPos"] for p in d["panels"]]
    check(all(g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 for g in grid),
          "panels fit the 24-column grid")
    clashes = [(d["panels"][i]["title"], d["panels"][j]["title"])
               for i in range(len(grid)) for j in range(i + 1, len(grid))
               if overlaps(grid[i], grid[j])]
    check(not clashes, f"no panels overlap {clashes}")

    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    check(rows == ["Experiments", "Actors", "Replay", "Learner", "Prior server", "Processes"],
          f"rows {rows}")
    doc = read(DOC) if DOC else ""
    doc_headings = set(re.findall(r"^#+\s+(.*?)\s*$", doc, re.M))
    for r in rows:
        check(r in doc_headings or not DOC, f"docs/dashboards.md has a section for row {r}")
    for panel in monitoring_lib.dashboard_panels(d):
        title = panel.get("title", "")
        where = f"panel '{title}'"
        check(panel.get("datasource", {}).get("uid") == "${datasource}",
              f"{where} uses the data source variable")
        check(bool(panel.get("description")), f"{where} has a description")
        check(f"**{title}**" in doc or not DOC, f"docs/dashboards.md describes {where}")
        targets = panel.get("targets", [])
        refs = [t.get("refId") for t in targets]
        check(targets and len(refs) == len(set(refs)), f"{where} has queries with unique refIds")
        for t in targets:
            check(t.get("datasource", {}).get("uid") == "${datasource}" and t.get("expr"),
                  f"{where} {t.get('refId')} has an expression on the data source variable")
            names = monitoring_lib.metric_names(t.get("expr", ""))
            bad = sorted(n for n in names if not n.startswith("prl_") and n != "up")
            check(names and not bad,
                  f"{where} {t.get('refId')} names PRL metrics only {sorted(names)}")


def check_lib():
    # the helpers the checks rely on
    m = monitoring_lib.metric_names(
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{method=~"x.*"}[5m]))) > 1e-3 '
        'and on (job) up offset 5m unless b:c / ignoring(x) group_left(y) d')
    check(m == {"a_bucket", "up", "b:c", "d"}, f"metric_names finds {sorted(m)}")
    s = monitoring_lib.substitute('x{e=~"$experiment"}[$__rate_interval] ${experiment:regex}',
                                  {"experiment": "exp-1", "__rate_interval": "1m"})
    check(s == 'x{e=~"exp-1"}[1m] exp-1', f"substitute gives {s}")
    sel = monitoring_lib.selectors_with_matchers(
        'sum(rate(a{x="}",y=~"b"}[5m])) / b unless up{job=~"prl-.*"} offset 1m')
    check(sel == ['a{x="}",y=~"b"}', 'up{job=~"prl-.*"}'], f"selectors_with_matchers gives {sel}")
    kept = [monitoring_lib.without_negative_matchers(x) for x in
            ['a{x="1", code!~"OK|NOT_FOUND",y=~"b"}', 'a{code!="OK"}', "up", 'b{x="}!="}']]
    check(kept == ['a{x="1",y=~"b"}', "a", "up", 'b{x="}!="}'],
          f"without_negative_matchers gives {kept}")
    names = monitoring_lib.exported_metric_names(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE c counter\nc{a=\"b\"} 1\ng 2\n")
    check(names == {"h", "h_bucket", "h_sum", "h_count", "c", "g"},
          f"exported_metric_names gives {sorted(names)}")


def main():
    if DOC:
        print(f"docs: {DOC}")
    else:
        print("note: docs/dashboards.md is neither a runfile nor found beside the sources; "
              "skipping the checks of the docs")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as scratch:
        check_lib()
        check_prometheus(scratch)
        check_dashboard()
    print(f"{passed} passed, {len(failures)} failed")
    for f in failures:
        print("  - " + f.splitlines()[0])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
