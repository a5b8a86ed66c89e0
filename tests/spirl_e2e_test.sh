#!/usr/bin/env bash
# The prior-guided loop end to end with real processes: prl_collect writes planner episodes on
# random mazes; a learner trains a SPiRL skill prior on them (TRAIN_PRIOR); prl_prior_server
# serves it from the learner's model store; an actor decodes the spirl policy's latents with it
# (in-process, since the artifact is readable here) and the learner trains spirl for 12,000 env
# steps. Asserts the pipeline completes, decoded actions reached the envs (the actor inserted
# decisions and finished episodes with the prior), updates happened, and the KL to the prior
# is finite while α has moved from its initial 1 toward the target divergence. Then the same for
# eap: an EAP CVAE (k = 10, learned state prior) trained on the same data, and eap for 6,000 env
# steps with the actor decoding each decision's 10 actions open loop. About 3 minutes.
set -euo pipefail
# shellcheck source=tests/e2e_lib.sh
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/e2e_lib.sh"
e2e_init spirl_e2e_test
mkdir -p "${S}/learner/models"

# 1. data: noisy planner episodes, one random 10x10 maze per env
"$(bin actor/collect/prl_collect)" --domain=point_maze --random_maze=10x10 --maze_seed=1000 \
  --maze_per_env --num_envs=4 --seed=1000 --collector=planner --action_noise=0.1 \
  --randomize_start_goal --episodes=60 --output="${S}/maze.hdf5" >"${S}/collect.log" 2>&1 ||
  fail "prl_collect failed"

# 2. the cluster: a replay shard, the prior server on the learner's model store, the learner
"$(bin replay/prl_replay)" --port=0 --metrics_port=-1 >"${S}/replay.log" 2>&1 &
pids+=($!)
"$(bin prior_server/prl_prior_server)" --port=0 --metrics_port=0 \
  --prior_model_dir="${S}/learner/models" >"${S}/prior.log" 2>&1 &
pids+=($!)
replay="$(ready "${S}/replay.log" grpc)"
prior="$(ready "${S}/prior.log" grpc)"
"$(bin learner/prl_learner)" --port=0 --metrics_port=0 --learner_state_dir="${S}/learner" \
  --learner_device=cpu --learner_replay="${replay}" --learner_prior_address="${prior}" \
  --learner_torch_threads=1 >"${S}/learner.log" 2>&1 &
pids+=($!)
learner="$(ready "${S}/learner.log" grpc)"
learner_metrics="$(ready "${S}/learner.log" metrics)"
prlctl=("$(bin cli/prlctl)" --learner="${learner}" --timeout=30s --watch_timeout=600s)

# 3. the skill prior
cat >"${S}/prior.textproto" <<EOF
name: "e2e-prior"
kind: KIND_TRAIN_PRIOR
prior_training {
  kind: PRIOR_KIND_SKILL_VAE
  dataset: "${S}/maze.hdf5"
  output_model: "maze-skills"
  horizon: 10
  latent_dim: 10
  network { hidden_sizes: [64, 64] }
  epochs: 3
  batch_size: 128
  seed: 1
}
EOF
id="$("${prlctl[@]}" submit "${S}/prior.textproto")" || fail "TRAIN_PRIOR submit failed"
"${prlctl[@]}" watch "${id}" >/dev/null || true
"${prlctl[@]}" get "${id}" | grep -q "EXPERIMENT_STATE_SUCCEEDED" || fail "TRAIN_PRIOR did not succeed"
[[ -f "${S}/learner/models/maze-skills/v1.prl" ]] || fail "no stored prior"

# 4. spirl with it on a fixed maze
"$(bin actor/prl_actor)" --port=0 --metrics_port=0 --actor_learner="${learner}" \
  --actor_num_envs=2 >"${S}/actor.log" 2>&1 &
pids+=($!)
actor_metrics="$(ready "${S}/actor.log" metrics)"
cat >"${S}/spirl.textproto" <<'EOF'
name: "e2e-spirl"
kind: KIND_TRAIN
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  episode_length: 200
  seed: 1
  maze {
    layout: "#########\n#...#...#\n#.#.#.#.#\n#.#...#.#\n#.#####.#\n#.......#\n#########"
    start { row: 1 col: 1 }
    goal { row: 1 col: 7 }
  }
}
algorithm { spirl {} network { hidden_sizes: [64, 64] } batch_size: 64 warmup_env_steps: 1000 }
prior { name: "maze-skills" }
replay { capacity: 100000 min_size_to_sample: 100 }
resources { num_actors: 1 envs_per_actor: 2 }
stop { max_env_steps: 12000 }
evaluation { every_env_steps: 6000 episodes: 2 }
EOF
run_to_success spirl "${S}/spirl.textproto"

# decoded actions reached the envs: the actor decoded with the prior and finished episodes
grep -q "prior 'maze-skills' v1 (PRIOR_KIND_SKILL_VAE) runs in-process" "${S}/actor.log" ||
  fail "the actor did not load the prior"
episodes="$(curl -s "http://${actor_metrics}/metrics" |
  sed -n 's/^prl_actor_episodes_total{kind="train"} \([0-9.e+]*\)$/\1/p')"
[[ -n "${episodes}" ]] && awk -v e="${episodes}" 'BEGIN { exit !(e >= 4) }' ||
  fail "the actor finished ${episodes:-no} training episodes"

# the KL to the prior is finite and α has left 1 (it is tuned toward δ)
metrics="$(curl -s "http://${learner_metrics}/metrics")"
kl="$(sed -n "s/^prl_learner_kl_to_prior{experiment=\"${id}\"} \\(.*\\)$/\\1/p" <<<"${metrics}")"
alpha="$(sed -n "s/^prl_learner_alpha{experiment=\"${id}\"} \\(.*\\)$/\\1/p" <<<"${metrics}")"
[[ -n "${kl}" && -n "${alpha}" ]] || fail "no kl_to_prior or alpha metric for ${id}"
awk -v k="${kl}" 'BEGIN { exit !(k == k + 0 && k > -1e30 && k < 1e30) }' ||
  fail "KL to the prior is not finite: ${kl}"
awk -v a="${alpha}" 'BEGIN { exit !(a != 1) }' || fail "alpha never moved from 1"
echo "spirl e2e: ${updates} updates, KL to the prior ${kl}, alpha ${alpha}, ${episodes} episodes"

# 5. eap: the CVAE prior, then the agent over its state prior with open-loop decoding
sed -e 's/PRIOR_KIND_SKILL_VAE/PRIOR_KIND_CVAE/' -e 's/maze-skills/maze-eap/' \
  -e 's/e2e-prior/e2e-eap-prior/' "${S}/prior.textproto" >"${S}/eap_prior.textproto"
id="$("${prlctl[@]}" submit "${S}/eap_prior.textproto")" || fail "CVAE TRAIN_PRIOR submit failed"
"${prlctl[@]}" watch "${id}" >/dev/null || true
"${prlctl[@]}" get "${id}" | grep -q "EXPERIMENT_STATE_SUCCEEDED" || fail "CVAE training failed"
sed -e 's/spirl {}/eap {}/' -e 's/maze-skills/maze-eap/' -e 's/e2e-spirl/e2e-eap/' \
  -e 's/max_env_steps: 12000/max_env_steps: 6000/' "${S}/spirl.textproto" >"${S}/eap.textproto"
run_to_success eap "${S}/eap.textproto"
grep -q "prior 'maze-eap' v1 (PRIOR_KIND_CVAE) runs in-process" "${S}/actor.log" ||
  fail "the actor did not load the CVAE prior"
metrics="$(curl -s "http://${learner_metrics}/metrics")"
kl="$(sed -n "s/^prl_learner_kl_to_prior{experiment=\"${id}\"} \\(.*\\)$/\\1/p" <<<"${metrics}")"
[[ -n "${kl}" ]] || fail "no kl_to_prior metric for ${id}"
awk -v k="${kl}" 'BEGIN { exit !(k == k + 0 && k > -1e30 && k < 1e30) }' ||
  fail "eap's KL to the state prior is not finite: ${kl}"
echo "eap e2e: ${updates} updates, KL to the state prior ${kl}"
