#!/usr/bin/env bash
# COLLECT end to end with real processes: a replay shard, the learner and one actor. A COLLECT
# experiment drives the maze planner (random start and goal, action noise) on small random mazes
# through the replay shard; the learner assembles whole episodes into its dataset store. The test
# checks the dataset in the store (prlctl datasets, the record's SHA-256 against the file, whole
# episodes read back with h5py when a python3 has it), that Submit refuses the name a second time
# and an unknown dataset name, then trains a small skill prior on the dataset by name
# (TRAIN_PRIOR) and finds it in the model store; last, a few episodes are collected with the
# policy of a short SAC run on the same learner (COLLECTOR_POLICY) and the policy is evaluated
# (EVALUATE). About a minute on 2 cores.
set -euo pipefail
# shellcheck source=tests/e2e_lib.sh
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/e2e_lib.sh"
e2e_init collect_e2e_test

# 1. the cluster: a replay shard, the learner, an actor with two envs
"$(bin replay/prl_replay)" --port=0 --metrics_port=-1 >"${S}/replay.log" 2>&1 &
pids+=($!)
replay="$(ready "${S}/replay.log" grpc)"
"$(bin learner/prl_learner)" --port=0 --metrics_port=0 --learner_state_dir="${S}/learner" \
  --learner_device=cpu --learner_replay="${replay}" --learner_torch_threads=1 \
  >"${S}/learner.log" 2>&1 &
pids+=($!)
learner="$(ready "${S}/learner.log" grpc)"
learner_metrics="$(ready "${S}/learner.log" metrics)"
"$(bin actor/prl_actor)" --port=0 --metrics_port=-1 --actor_learner="${learner}" \
  --actor_num_envs=2 >"${S}/actor.log" 2>&1 &
pids+=($!)
prlctl=("$(bin cli/prlctl)" --learner="${learner}" --timeout=30s --watch_timeout=300s)

# 2. COLLECT: planner episodes between random cells of small random mazes
cat >"${S}/collect.textproto" <<'EOF'
name: "e2e-collect"
kind: KIND_COLLECT
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  maze { random { rows: 8 cols: 8 seed: 40 per_env: true } }
  episode_length: 150
  seed: 40
}
resources { num_actors: 1 envs_per_actor: 2 }
collect {
  collector: COLLECTOR_SCRIPTED
  script: "planner"
  num_episodes: 40
  action_noise: 0.1
  randomize_start_goal: true
  output_dataset: "e2e-maze"
}
EOF
id="$("${prlctl[@]}" submit "${S}/collect.textproto")" || fail "COLLECT submit failed"
"${prlctl[@]}" watch "${id}" >"${S}/watch.out" || true
experiment="$("${prlctl[@]}" get "${id}")"
grep -q "EXPERIMENT_STATE_SUCCEEDED" <<<"${experiment}" ||
  fail "COLLECT did not succeed: $(grep -E 'state|reason' <<<"${experiment}")"
grep -q 'end_reason: "num_episodes reached"' <<<"${experiment}" ||
  fail "COLLECT ended for another reason: ${experiment}"

# the dataset is in the store, with its record, and the record's hash is the file's
file="${S}/learner/datasets/e2e-maze.hdf5"
[[ -f "${file}" && -f "${S}/learner/datasets/e2e-maze.info" ]] || fail "no dataset in the store"
listed="$("${prlctl[@]}" datasets e2e-maze)" || fail "prlctl datasets failed"
echo "${listed}"
grep -Eq '^e2e-maze +40 ' <<<"${listed}" || fail "prlctl datasets does not show 40 episodes"
hash="$(sed -n 's/^hash: sha256:\([0-9a-f]*\)$/\1/p' <<<"${listed}")"
[[ "${hash}" == "$(sha256sum "${file}" | cut -d' ' -f1)" ]] ||
  fail "the record's hash ${hash} is not the file's"
grep -q "dataset_hash: \"sha256:${hash}\"" <<<"${experiment}" ||
  fail "the experiment's outputs do not name the dataset's hash"
transitions="$(sed -n 's/^ *dataset_transitions: \([0-9]*\)$/\1/p' <<<"${experiment}")"
episodes_total="$(curl -s "http://${learner_metrics}/metrics" |
  sed -n "s/^prl_learner_episodes_total{experiment=\"${id}\"} \\(.*\\)$/\\1/p")"
awk -v e="${episodes_total}" 'BEGIN { exit !(e == 40) }' ||
  fail "prl_learner_episodes_total is ${episodes_total:-missing}, not 40"

# whole episodes, read back with h5py (the first python3 that has it)
python=""
for candidate in $(type -ap python3); do
  if "${candidate}" -c 'import h5py, numpy' 2>/dev/null; then
    python="${candidate}"
    break
  fi
done
if [[ -n "${python}" ]]; then
  "${python}" - "${file}" "${transitions}" <<'EOF' || fail "the dataset is not 40 whole episodes"
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    obs, nxt = f["observations"][:], f["next_observations"][:]
    ends = np.logical_or(f["terminals"][:], f["timeouts"][:])
    assert obs.shape == (int(sys.argv[2]), 4), obs.shape
    assert f["actions"].shape == (obs.shape[0], 2)
    assert ends.sum() == 40 and ends[-1], (ends.sum(), ends[-1])
    assert not np.logical_and(f["terminals"][:], f["timeouts"][:]).any()
    # within an episode each row starts where the previous one ended
    inner = ~ends[:-1]
    assert np.allclose(nxt[:-1][inner], obs[1:][inner]), "rows out of order"
    print("h5py:", obs.shape[0], "transitions,", int(ends.sum()), "episodes")
EOF
else
  echo "no python3 with h5py: skipping the read-back (scripts/setup.sh installs python3-h5py)"
fi

# 3. Submit refuses the name again, and a TRAIN_PRIOR on a dataset that does not exist
if out="$("${prlctl[@]}" submit "${S}/collect.textproto" 2>&1)"; then
  fail "a second COLLECT of e2e-maze was accepted"
fi
grep -q "ALREADY_EXISTS: collect.output_dataset" <<<"${out}" || fail "unexpected: ${out}"
cat >"${S}/prior.textproto" <<'EOF'
name: "e2e-prior"
kind: KIND_TRAIN_PRIOR
prior_training {
  kind: PRIOR_KIND_SKILL_VAE
  dataset: "e2e-maze"
  output_model: "e2e-skills"
  horizon: 5
  latent_dim: 4
  network { hidden_sizes: [32, 32] }
  max_steps: 40
  batch_size: 64
  seed: 1
}
EOF
sed 's/dataset: "e2e-maze"/dataset: "no-such-set"/' "${S}/prior.textproto" >"${S}/bad.textproto"
if out="$("${prlctl[@]}" submit "${S}/bad.textproto" 2>&1)"; then
  fail "a TRAIN_PRIOR on an unknown dataset was accepted"
fi
grep -q 'prior_training.dataset: "no-such-set" is not a dataset of this learner (stored: e2e-maze' \
  <<<"${out}" || fail "unexpected: ${out}"

# 4. TRAIN_PRIOR on the dataset by name
id="$("${prlctl[@]}" submit "${S}/prior.textproto")" || fail "TRAIN_PRIOR submit failed"
"${prlctl[@]}" watch "${id}" >/dev/null || true
experiment="$("${prlctl[@]}" get "${id}")"
grep -q "EXPERIMENT_STATE_SUCCEEDED" <<<"${experiment}" ||
  fail "TRAIN_PRIOR did not succeed: $(grep -E 'state|reason' <<<"${experiment}")"
[[ -f "${S}/learner/models/e2e-skills/v1.prl" ]] || fail "no stored prior"

# 5. COLLECTOR_POLICY: a few episodes with the policy of a short SAC run on this learner
cat >"${S}/sac.textproto" <<'EOF'
name: "e2e-sac"
kind: KIND_TRAIN
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  maze { random { rows: 8 cols: 8 seed: 41 } }
  episode_length: 100
  seed: 3
}
algorithm { sac {} network { hidden_sizes: [32, 32] } batch_size: 64 warmup_env_steps: 400 }
replay { capacity: 10000 min_size_to_sample: 200 }
resources { num_actors: 1 envs_per_actor: 2 }
stop { max_env_steps: 1200 }
evaluation { disabled: true }
EOF
sac="$("${prlctl[@]}" submit "${S}/sac.textproto")" || fail "TRAIN submit failed"
"${prlctl[@]}" watch "${sac}" >/dev/null || fail "the SAC run did not succeed"
cat >"${S}/policy.textproto" <<EOF
name: "e2e-collect-policy"
kind: KIND_COLLECT
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  maze { random { rows: 8 cols: 8 seed: 41 } }
  episode_length: 100
  seed: 7
}
resources { num_actors: 1 envs_per_actor: 2 }
collect {
  collector: COLLECTOR_POLICY
  policy { experiment_id: "${sac}" }
  num_episodes: 6
  action_noise: 0.1
  output_dataset: "e2e-policy"
}
EOF
id="$("${prlctl[@]}" submit "${S}/policy.textproto")" || fail "COLLECT (policy) submit failed"
"${prlctl[@]}" watch "${id}" >/dev/null || true
experiment="$("${prlctl[@]}" get "${id}")"
grep -q "EXPERIMENT_STATE_SUCCEEDED" <<<"${experiment}" ||
  fail "COLLECT with the policy did not succeed: $(grep -E 'state|reason' <<<"${experiment}")"
grep -q "acting with policy:${sac}" <<<"${experiment}" || fail "the policy was not acting"
listed="$("${prlctl[@]}" datasets)" || fail "prlctl datasets failed"
echo "${listed}"
grep -Eq '^e2e-policy +6 ' <<<"${listed}" || fail "prlctl datasets does not show e2e-policy"
grep -Eq '^e2e-maze +40 ' <<<"${listed}" || fail "prlctl datasets does not show e2e-maze"

# 6. EVALUATE: the SAC run's policy for 4 episodes, summarised in the experiment's outputs
cat >"${S}/evaluate.textproto" <<EOF
name: "e2e-evaluate"
kind: KIND_EVALUATE
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  maze { random { rows: 8 cols: 8 seed: 41 } }
  episode_length: 100
  seed: 9
}
resources { num_actors: 1 envs_per_actor: 2 }
evaluate { policy { experiment_id: "${sac}" } episodes: 4 }
EOF
id="$("${prlctl[@]}" submit "${S}/evaluate.textproto")" || fail "EVALUATE submit failed"
"${prlctl[@]}" watch "${id}" >/dev/null || true
experiment="$("${prlctl[@]}" get "${id}")"
grep -q "EXPERIMENT_STATE_SUCCEEDED" <<<"${experiment}" ||
  fail "EVALUATE did not succeed: $(grep -E 'state|reason' <<<"${experiment}")"
evaluation="$(awk '/evaluation \{/{p=1} p' <<<"${experiment}")"
grep -q "episodes: 4" <<<"${evaluation}" || fail "no evaluation of 4 episodes: ${experiment}"
grep -q "mean_length:" <<<"${evaluation}" || fail "no mean length: ${evaluation}"
grep -q "experiment_id: \"${sac}\"" <<<"${evaluation}" || fail "the policy is not named"
echo "collect e2e: ${transitions} transitions in 40 episodes (sha256:${hash:0:16}...), prior" \
  "trained; 6 episodes with the policy of ${sac}; evaluated it:" \
  "$(grep -E -m2 'mean_return|mean_length' <<<"${evaluation}" | tr -s ' \n' ' ')"
