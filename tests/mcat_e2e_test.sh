#!/usr/bin/env bash
# MCAT end to end with real processes: a replay shard, a learner and an actor; an mcat
# experiment on two cheetah armature tasks with delayed rewards. Asserts the run succeeds with
# updates; the learner trained every component (forward-model, contrastive, translator, critic
# and self-imitation losses are exported); the translator is stored in the model store; the
# published policy carries the context encoder, the translator and a
# transfer plan over both tasks; and evaluation rounds ran on the held-out armature (acting in
# context, no transfer). About 1-2 minutes.
set -euo pipefail
# shellcheck source=tests/e2e_lib.sh
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/e2e_lib.sh"
e2e_init mcat_e2e_test
mkdir -p "${S}/learner"

"$(bin replay/prl_replay)" --port=0 --metrics_port=0 >"${S}/replay.log" 2>&1 &
pids+=($!)
replay="$(ready "${S}/replay.log" grpc)"
"$(bin learner/prl_learner)" --port=0 --metrics_port=0 --learner_state_dir="${S}/learner" \
  --learner_device=cpu --learner_replay="${replay}" --learner_torch_threads=1 \
  >"${S}/learner.log" 2>&1 &
pids+=($!)
learner="$(ready "${S}/learner.log" grpc)"
learner_metrics="$(ready "${S}/learner.log" metrics)"
"$(bin actor/prl_actor)" --port=0 --metrics_port=0 --actor_learner="${learner}" \
  --actor_num_envs=2 >"${S}/actor.log" 2>&1 &
pids+=($!)
ready "${S}/actor.log" metrics >/dev/null
prlctl=("$(bin cli/prlctl)" --learner="${learner}" --timeout=30s --watch_timeout=600s)

cat >"${S}/mcat.textproto" <<'EOF'
name: "e2e-mcat"
kind: KIND_TRAIN
env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 100 reward_delay: 25 seed: 1 }
algorithm {
  mcat {
    train_tasks { armature_scale: 0.5 }
    train_tasks { armature_scale: 1.5 }
    test_tasks { armature_scale: 1.0 }
    context_history: 4
    prediction_horizon: 3
    context_dim: 4
    transfer_window_episodes: 2
    self_imitation_capacity: 20000
  }
  network { hidden_sizes: [32, 32] }
  batch_size: 64
  warmup_env_steps: 400
}
# rate-limited like the benchmarks (one update per env step): the self-imitation table must
# not hold back the actors' inserts
replay { capacity: 20000 min_size_to_sample: 200 samples_per_insert: 64 }
resources { num_actors: 1 envs_per_actor: 2 }
stop { max_env_steps: 2500 }
evaluation { every_env_steps: 1250 episodes: 2 }
EOF
run_to_success mcat "${S}/mcat.textproto"

# every component trained: its loss is exported and finite (a self_imitation loss means the
# learner sampled rows that the actor inserted, with their returns, into the self-imitation
# table at episode ends; the run deletes its tables when it ends)
metrics="$(curl -s "http://${learner_metrics}/metrics")"
for loss in forward contrastive model translator critic self_imitation; do
  value="$(sed -n "s/^prl_learner_loss{experiment=\"${id}\",loss=\"${loss}\"} \\(.*\\)$/\\1/p" \
    <<<"${metrics}")"
  [[ -n "${value}" ]] || fail "no ${loss} loss exported for ${id}"
  awk -v v="${value}" 'BEGIN { exit !(v == v + 0 && v > -1e30 && v < 1e30) }' ||
    fail "${loss} loss is not finite: ${value}"
done

# the published policy: the context encoder and translator travel with it, and its plan
# covers both training tasks
policy="$("$(bin tests/policy_probe)" --learner="${learner}" --experiment="${id}")" ||
  fail "GetPolicy failed"
grep -q "context_dim: 4" <<<"${policy}" || fail "policy without context_dim: ${policy}"
grep -q "context_encoder.out.weight" <<<"${policy}" || fail "no context encoder weights"
grep -q "translator.out.weight" <<<"${policy}" || fail "no translator weights"
grep -q "source_tasks: 2" <<<"${policy}" || fail "no transfer plan over 2 tasks: ${policy}"

# the run stored its action translator in the model store, servable by the prior server
[[ -f "${S}/learner/models/${id}-translator/v1.prl" ]] ||
  fail "no translator artifact in the model store: $(ls -R "${S}/learner/models" 2>&1)"

# evaluation rounds ran on the held-out armature (test_tasks), acting in context
rounds="$(sed -n 's/^ *eval_rounds: \([0-9]*\)$/\1/p' <<<"${experiment}" | head -1)"
[[ "${rounds:-0}" -ge 1 ]] || fail "no evaluation round on the held-out task"
grep -q "evaluation round" "${S}/actor.log" || fail "the actor ran no evaluation round"
echo "mcat e2e: ${updates} updates, ${rounds} held-out evaluation rounds"
