#!/usr/bin/env python3
"""Writes deploy/grafana/prl.json, PRL's Grafana dashboard, from the panel list below.

Edit the panels here, not in the JSON, and run

    python3 deploy/grafana/generate_dashboard.py            # rewrites prl.json
    python3 deploy/grafana/generate_dashboard.py --check    # exit 1 if prl.json is stale

//tests:monitoring_config_test runs --check; //tests:monitoring_e2e_test runs every panel's
query against a real Prometheus scraping a real cluster. What each row shows:
docs/dashboards.md.

Conventions: every query uses only metrics PRL processes export (docs/operations.md, Metrics)
and Prometheus's `up`; `$experiment` is a regex (multi-value, All = .*), the actors' replay table
of an experiment is named after it (other tables of the experiment add a suffix); rates use
Grafana's $__rate_interval. prometheus-cpp exports no process_* metrics, so there is no CPU or
memory panel.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "prl.json")

DS = {"type": "prometheus", "uid": "${datasource}"}
EXP = 'experiment=~"$experiment"'
TABLE = 'table=~"$experiment.*"'
PRIOR = 'method=~"/prl[.]v1[.]PriorService/.*"'
RI = "$__rate_interval"


def q(expr, legend="", instant=False):
    return {"expr": expr, "legend": legend, "instant": instant}


def ts(title, description, targets, unit="short", width=8, min0=True):
    return {"kind": "timeseries", "title": title, "description": description,
            "targets": targets, "unit": unit, "w": width, "min0": min0}


def stat(title, description, targets, unit="short", width=8):
    return {"kind": "stat", "title": title, "description": description, "targets": targets,
            "unit": unit, "w": width}


ROWS = [
    ("Experiments", [
        stat("Experiments by state",
             "Experiments each learner holds, by state (prl_learner_experiments). A rising "
             "'failed' count fires PRLExperimentFailed; 'succeeded' counts finished runs.",
             [q("sum by (state) (prl_learner_experiments)", "{{state}}", instant=True)],
             width=8),
        ts("Episode return (train, eval)",
           "Mean return of the latest training episodes (train: mean of the last 10) and of "
           "the latest evaluation round (eval), per experiment.",
           [q(f"prl_learner_episode_return{{{EXP}}}", "{{experiment}} {{kind}}")],
           min0=False, width=16),
        ts("Env steps/s",
           "Env steps the actors report to the learner per second, per experiment.",
           [q(f"sum by (experiment) (rate(prl_learner_env_steps_total{{{EXP}}}[{RI}]))",
              "{{experiment}}")], unit="ops"),
        ts("Updates/s",
           "Gradient updates per second, per experiment.",
           [q(f"sum by (experiment) (rate(prl_learner_updates_total{{{EXP}}}[{RI}]))",
              "{{experiment}}")], unit="ops"),
        ts("Updates per env step",
           "Replay ratio actually achieved: gradient updates per env step. The spec's "
           "samples_per_insert / batch_size bounds it.",
           [q(f"sum by (experiment) (rate(prl_learner_updates_total{{{EXP}}}[{RI}])) / "
              f"sum by (experiment) (rate(prl_learner_env_steps_total{{{EXP}}}[{RI}]))",
              "{{experiment}}")]),
        stat("Progress",
             "Env steps and training episodes reported since this learner process started, "
             "gradient updates, and the latest policy version published to the actors.",
             [q(f"sum by (experiment) (prl_learner_env_steps_total{{{EXP}}})",
                "{{experiment}} env steps", instant=True),
              q(f"sum by (experiment) (prl_learner_episodes_total{{{EXP}}})",
                "{{experiment}} episodes", instant=True),
              q(f"sum by (experiment) (prl_learner_updates_total{{{EXP}}})",
                "{{experiment}} updates", instant=True),
              q(f"max by (experiment) (prl_learner_policy_version{{{EXP}}})",
                "{{experiment}} policy version", instant=True)], width=16),
        ts("Training episodes/min",
           "Training episodes the actors finished per minute, per experiment.",
           [q(f"sum by (experiment) (rate(prl_learner_episodes_total{{{EXP}}}[{RI}])) * 60",
              "{{experiment}}")]),
    ]),
    ("Actors", [
        ts("Env steps/s per actor",
           "Env steps each actor takes per second (training, warm-up and evaluation). A flat "
           "zero while the learner trains fires PRLActorStalled.",
           [q(f"sum by (instance) (rate(prl_actor_env_steps_total[{RI}]))", "{{instance}}")],
           unit="ops"),
        ts("Episodes/min per actor",
           "Episodes each actor finishes per minute, training and evaluation.",
           [q(f"sum by (instance, kind) (rate(prl_actor_episodes_total[{RI}])) * 60",
              "{{instance}} {{kind}}")]),
        ts("Transitions inserted/s per actor",
           "Items the replay shards accepted from each actor per second.",
           [q(f"sum by (instance) (rate(prl_actor_inserted_items_total[{RI}]))",
              "{{instance}}")], unit="ops"),
        ts("RPC errors/s per actor",
           "Failed calls to the learner (Join, Heartbeat, GetPolicy, ReportEpisodes, Leave) "
           "and to replay (Insert), per actor. Empty while nothing failed.",
           [q(f"sum by (instance, rpc) (rate(prl_actor_rpc_errors_total[{RI}]))",
              "{{instance}} {{rpc}}")], unit="ops"),
        ts("Latest episode return per actor",
           "Return of each actor's latest finished episode, by kind.",
           [q("prl_actor_episode_return", "{{instance}} {{kind}}")], min0=False),
        ts("Policy version: actors and learner",
           "The policy version each actor acts with and the latest the learner published: "
           "a growing gap means actors fail to fetch policies.",
           [q("prl_actor_policy_version", "{{instance}}"),
            q(f"max by (experiment) (prl_learner_policy_version{{{EXP}}})",
              "learner {{experiment}}")]),
    ]),
    ("Replay", [
        ts("Inserts/s by table",
           "Items inserted per second into the experiment's tables, summed over shards. "
           "Zero on a shard while the learner trains fires PRLReplayTableNotGrowing.",
           [q(f"sum by (table) (rate(prl_replay_inserts_total{{{TABLE}}}[{RI}]))", "{{table}}")],
           unit="ops"),
        ts("Samples/s by table",
           "Items sampled per second from the experiment's tables, summed over shards.",
           [q(f"sum by (table) (rate(prl_replay_samples_total{{{TABLE}}}[{RI}]))", "{{table}}")],
           unit="ops"),
        ts("Samples per insert",
           "Items sampled per item inserted; the rate limiter holds it near the spec's "
           "samples_per_insert once the table has min_size_to_sample items.",
           [q(f"sum by (table) (rate(prl_replay_samples_total{{{TABLE}}}[{RI}])) / "
              f"sum by (table) (rate(prl_replay_inserts_total{{{TABLE}}}[{RI}]))",
              "{{table}}")]),
        ts("Table size per shard",
           "Items each shard holds for the experiment's tables.",
           [q(f"prl_replay_table_size{{{TABLE}}}", "{{table}} {{instance}}")]),
        ts("Rate-limiter wait",
           "Seconds per second that inserts (actors) and samples (learner) spend blocked on "
           "the table's rate limiter, summed over shards and callers: 1 means one caller "
           "blocked all the time. High sample wait: the learner outruns the actors.",
           [q(f"sum by (table, op) (rate(prl_replay_rate_limiter_wait_seconds_total{{{TABLE}}}"
              f"[{RI}]))", "{{table}} {{op}}")]),
        ts("Removals/s by table",
           "Items evicted (table full) or removed after max_times_sampled, per second.",
           [q(f"sum by (table) (rate(prl_replay_removals_total{{{TABLE}}}[{RI}]))", "{{table}}")],
           unit="ops"),
        ts("Shard checkpoint size",
           "Size of each shard's latest checkpoint (every table, all experiments).",
           [q("prl_replay_checkpoint_bytes", "{{instance}}")], unit="bytes"),
        ts("Shard checkpoint duration (mean over 30 min)",
           "Mean time to write a shard checkpoint over the last 30 minutes (checkpoints are "
           "minutes apart); empty until the first one.",
           [q("sum by (instance) (rate(prl_replay_checkpoint_duration_seconds_sum[30m])) / "
              "sum by (instance) (rate(prl_replay_checkpoint_duration_seconds_count[30m]))",
              "{{instance}}")], unit="s"),
    ]),
    ("Learner", [
        ts("Updates/s per learner",
           "Gradient updates per second, per learner process and experiment.",
           [q(f"sum by (instance, experiment) (rate(prl_learner_updates_total{{{EXP}}}[{RI}]))",
              "{{instance}} {{experiment}}")], unit="ops"),
        ts("Update duration (p50, p90, p99)",
           "Time one gradient update takes (prl_learner_update_duration_seconds).",
           [q(f"histogram_quantile({p}, sum by (le, experiment) "
              f"(rate(prl_learner_update_duration_seconds_bucket{{{EXP}}}[{RI}])))",
              f"{{{{experiment}}}} p{int(round(p * 100))}") for p in (0.5, 0.9, 0.99)],
           unit="s"),
        ts("Update loop: waiting vs updating",
           "Fraction of wall time the update loop waits for a batch (replay filling, rate "
           "limiter, shards down) and spends in updates. Waiting above 80% for 15 minutes fires "
           "PRLLearnerStarved.",
           [q(f"sum by (experiment) (rate(prl_learner_sample_wait_seconds_total{{{EXP}}}[{RI}]))",
              "{{experiment}} waiting for batches"),
            q(f"sum by (experiment) (rate(prl_learner_update_duration_seconds_sum{{{EXP}}}"
              f"[{RI}]))", "{{experiment}} updating")], unit="percentunit"),
        ts("Losses",
           "Latest value of each training loss (critic, actor, alpha, ...).",
           [q(f"prl_learner_loss{{{EXP}}}", "{{experiment}} {{loss}}")], min0=False),
        ts("Temperature α",
           "Latest temperature: the entropy weight (SAC) or KL-to-prior weight.",
           [q(f"prl_learner_alpha{{{EXP}}}", "{{experiment}}")], min0=False),
        ts("Policy entropy",
           "Latest policy entropy estimate -E[log π(a|s)].",
           [q(f"prl_learner_policy_entropy{{{EXP}}}", "{{experiment}}")], min0=False),
        ts("KL to prior",
           "Latest KL divergence of the policy to the behavioural prior (prior-guided methods; "
           "0 for the others).",
           [q(f"prl_learner_kl_to_prior{{{EXP}}}", "{{experiment}}")], min0=False),
        ts("Mean Q",
           "Latest mean Q value over the sampled batch.",
           [q(f"prl_learner_q_mean{{{EXP}}}", "{{experiment}}")], min0=False),
        ts("Policy version",
           "Latest policy version published to the actors; never goes backwards.",
           [q(f"prl_learner_policy_version{{{EXP}}}", "{{experiment}}")]),
        ts("Replay size seen by the learner",
           "Items in the experiment's table (over all shards) at the latest sample.",
           [q(f"prl_learner_replay_size{{{EXP}}}", "{{experiment}}")]),
        ts("Checkpoints per hour",
           "Training checkpoints written in the last hour, by result (ok, error). Any error "
           "fires PRLCheckpointFailing.",
           [q(f"sum by (experiment, result) (increase(prl_learner_checkpoints_total{{{EXP}}}[1h]))",
              "{{experiment}} {{result}}")]),
        ts("Checkpoint duration (mean over 10 min)",
           "Mean time writing one training checkpoint took over the last 10 minutes.",
           [q(f"sum by (experiment) (rate(prl_learner_checkpoint_duration_seconds_sum{{{EXP}}}[10m]))"
              f" / sum by (experiment) (rate(prl_learner_checkpoint_duration_seconds_count{{{EXP}}}"
              f"[10m]))", "{{experiment}}")], unit="s"),
    ]),
    ("Prior server", [
        ts("Prior inference requests/s by model, method and code",
           "Inference calls (Decode, Prior, Forward, Inverse, Translate) the prior servers "
           "answered per second, by model name, method and status code "
           "(prl_prior_requests_total). Model (unknown): the name or version did not resolve.",
           [q(f"sum by (model, method, code) (rate(prl_prior_requests_total[{RI}]))",
              "{{model}} {{method}} {{code}}")], unit="reqps"),
        ts("Prior inference errors (fraction of calls)",
           "Fraction of inference calls that did not end OK, by model, method and code. "
           "NOT_FOUND, INVALID_ARGUMENT and FAILED_PRECONDITION are the caller's mistakes; "
           "other codes above 1% for 5 minutes fire PRLPriorErrors.",
           [q(f"sum by (model, method, code) (rate(prl_prior_requests_total{{code!=\"OK\"}}"
              f"[{RI}])) / on (model, method) group_left "
              f"sum by (model, method) (rate(prl_prior_requests_total[{RI}]))",
              "{{model}} {{method}} {{code}}")], unit="percentunit"),
        ts("Prior latency (p50, p99) by method",
           "Time from receiving a PriorService call to sending its status (gRPC metrics): "
           "queue time, compute time and (de)serialisation. p99 of an inference method above "
           "100 ms for 10 minutes fires PRLPriorLatencyHigh.",
           [q(f"histogram_quantile({p}, sum by (le, method) "
              f"(rate(prl_grpc_server_handling_seconds_bucket{{{PRIOR}}}[{RI}])))",
              f"{{{{method}}}} p{int(round(p * 100))}") for p in (0.5, 0.99)], unit="s"),
        ts("Prior queue time (p50, p99) by model and method",
           "Time a call waited in its batcher's queue before its batch started "
           "(prl_prior_queue_seconds). Up to the batching delay (max_queue_delay_us) while a "
           "batch instance is free; far above it every instance is busy and calls queue up: "
           "the server is overloaded.",
           [q(f"histogram_quantile({p}, sum by (le, model, method) "
              f"(rate(prl_prior_queue_seconds_bucket[{RI}])))",
              f"{{{{model}}}} {{{{method}}}} p{int(round(p * 100))}") for p in (0.5, 0.99)],
           unit="s"),
        ts("Prior compute time per batch (p50, p99) by model and method",
           "Time one batch took to compute (prl_prior_compute_seconds). High while the queue "
           "time is low: the model is slow on this hardware (size, threads, CPU limits).",
           [q(f"histogram_quantile({p}, sum by (le, model, method) "
              f"(rate(prl_prior_compute_seconds_bucket[{RI}])))",
              f"{{{{model}}}} {{{{method}}}} p{int(round(p * 100))}") for p in (0.5, 0.99)],
           unit="s"),
        ts("Prior rows per batch (mean)",
           "Rows one batch computed, on average (prl_prior_batch_rows). At max_batch_rows the "
           "batches are full.",
           [q(f"sum by (model, method) (rate(prl_prior_batch_rows_sum[{RI}])) / "
              f"sum by (model, method) (rate(prl_prior_batch_rows_count[{RI}]))",
              "{{model}} {{method}}")]),
        ts("Prior calls per batch (mean)",
           "Calls coalesced into one batch, on average (prl_prior_batch_calls). 1: no batching "
           "happens (few concurrent callers, or a queue delay of 0).",
           [q(f"sum by (model, method) (rate(prl_prior_batch_calls_sum[{RI}])) / "
              f"sum by (model, method) (rate(prl_prior_batch_calls_count[{RI}]))",
              "{{model}} {{method}}")]),
        ts("Prior loaded model versions",
           "Versions of each model loaded and served, per prior server "
           "(prl_prior_loaded_models).",
           [q("prl_prior_loaded_models", "{{model}} {{instance}}")]),
        ts("Prior model loads per hour by result",
           "Model loads (LoadModel, pushes from the learner, on-demand loads from the model "
           "directory) in the last hour, by result: ok or the error code.",
           [q("sum by (result) (increase(prl_prior_model_loads_total[1h]))", "{{result}}")]),
    ]),
    ("Processes", [
        ts("Processes up",
           "1 while Prometheus scrapes the process, 0 when it cannot (PRLTargetDown fires after "
           "a minute), for every target that exported prl_build_info in the last day.",
           [q("up * on (job, instance) group_left () "
              "max by (job, instance) (last_over_time(prl_build_info[1d]))",
              "{{job}} {{instance}}")]),
        stat("Versions",
             "Processes per service and PRL version (prl_build_info).",
             [q("count by (service, version) (prl_build_info)", "{{service}} {{version}}",
                instant=True)]),
        ts("Restarts (counter resets in the last hour)",
           "prometheus-cpp exports no process_start_time_seconds, so restarts are counted as "
           "resets of the process's RPC counters (and an actor's env-step counter). Any reset "
           "fires PRLProcessRestarted.",
           [q("max by (job, instance) (resets(prl_grpc_server_handled_total[1h]) "
              "or resets(prl_actor_env_steps_total[1h]))", "{{job}} {{instance}}")]),
        ts("gRPC requests/s by method",
           "RPCs every PRL server handled per second, by job and method (health checks "
           "included).",
           [q(f"sum by (job, method) (rate(prl_grpc_server_handled_total[{RI}]))",
              "{{job}} {{method}}")], unit="reqps"),
        ts("gRPC errors/s by method and code",
           "RPCs that ended with a status other than OK, per second.",
           [q(f"sum by (job, method, code) (rate(prl_grpc_server_handled_total{{code!=\"OK\"}}"
              f"[{RI}]))", "{{job}} {{method}} {{code}}")], unit="reqps"),
        ts("gRPC p99 latency by method",
           "99th percentile time from receiving an RPC to sending its status, by job and "
           "method. Streaming calls (Watch, Insert) last as long as the stream.",
           [q(f"histogram_quantile(0.99, sum by (le, job, method) "
              f"(rate(prl_grpc_server_handling_seconds_bucket[{RI}])))",
              "{{job}} {{method}}")], unit="s"),
    ]),
]


def panel_json(p, pid, x, y, h):
    targets = []
    for i, t in enumerate(p["targets"]):
        targets.append({
            "datasource": DS,
            "editorMode": "code",
            "expr": t["expr"],
            "instant": t["instant"],
            "legendFormat": t["legend"] or "__auto",
            "range": not t["instant"],
            "refId": chr(ord("A") + i),
        })
    defaults = {"unit": p["unit"], "color": {"mode": "palette-classic"}}
    if p["kind"] == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0,
                              "showPoints": "never", "spanNulls": False}
        if p["min0"]:
            defaults["custom"]["axisSoftMin"] = 0
        options = {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom",
                       "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": "green", "value": None}]}
        options = {
            "colorMode": "value", "graphMode": "none", "justifyMode": "auto",
            "orientation": "auto", "textMode": "value_and_name",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        }
    return {
        "datasource": DS,
        "description": p["description"],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": {"h": h, "w": p["w"], "x": x, "y": y},
        "id": pid,
        "options": options,
        "targets": targets,
        "title": p["title"],
        "type": p["kind"],
    }


def dashboard():
    panels = []
    pid = 1
    y = 0
    for title, row in ROWS:
        panels.append({"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                       "id": pid, "panels": [], "title": title, "type": "row"})
        pid += 1
        y += 1
        x = 0
        h = 8
        for p in row:
            if x + p["w"] > 24:
                x = 0
                y += h
            panels.append(panel_json(p, pid, x, y, h))
            pid += 1
            x += p["w"]
        y += h
    experiment_query = "label_values(prl_learner_updates_total, experiment)"
    return {
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "description": "PRL: experiments, actors, replay, learner, prior server and processes. "
                       "Generated by deploy/grafana/generate_dashboard.py; see "
                       "docs/dashboards.md.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "liveNow": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["prl"],
        "templating": {"list": [
            {
                "current": {},
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "skipUrlSync": False,
                "type": "datasource",
            },
            {
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "datasource": DS,
                "definition": experiment_query,
                "hide": 0,
                "includeAll": True,
                "label": "Experiment",
                "multi": True,
                "name": "experiment",
                "options": [],
                "query": {"qryType": 1, "query": experiment_query,
                          "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "refresh": 2,
                "regex": "",
                "skipUrlSync": False,
                "sort": 1,
                "type": "query",
            },
        ]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "PRL",
        "uid": "prl-overview",
        "version": 1,
        "weekStart": "",
    }


def main():
    text = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{OUT} is stale: run python3 deploy/grafana/generate_dashboard.py",
                      file=sys.stderr)
                return 1
        print(f"{OUT} is up to date")
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
