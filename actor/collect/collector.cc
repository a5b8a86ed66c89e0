#include "actor/collect/collector.h"

#include <algorithm>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace prl::actor {
namespace {

// One env's unfinished episode, row-major.
struct EpisodeBuffer {
  std::vector<float> obs, actions, rewards, next_obs, infos;
  std::vector<uint8_t> terminals, timeouts;
  double episode_return = 0;

  int64_t size() const { return static_cast<int64_t>(rewards.size()); }
  void Clear() {
    obs.clear();
    actions.clear();
    rewards.clear();
    next_obs.clear();
    infos.clear();
    terminals.clear();
    timeouts.clear();
    episode_return = 0;
  }
};

absl::Status WriteEpisode(const EpisodeBuffer& episode, const Env& env,
                          const std::vector<InfoField>& fields, DatasetWriter* writer) {
  if (writer == nullptr) return absl::OkStatus();
  const size_t obs_dim = env.obs_dim(), act_dim = env.act_dim();
  const size_t info_dim = env.info_dim();
  for (int64_t t = 0; t < episode.size(); ++t) {
    TransitionRow row;
    row.observation = absl::MakeConstSpan(episode.obs).subspan(t * obs_dim, obs_dim);
    row.action = absl::MakeConstSpan(episode.actions).subspan(t * act_dim, act_dim);
    row.next_observation = absl::MakeConstSpan(episode.next_obs).subspan(t * obs_dim, obs_dim);
    row.reward = episode.rewards[t];
    row.terminal = episode.terminals[t] != 0;
    row.timeout = episode.timeouts[t] != 0;
    size_t offset = t * info_dim;
    for (const InfoField& f : fields) {
      row.infos.push_back(absl::MakeConstSpan(episode.infos).subspan(offset, f.dim));
      offset += f.dim;
    }
    PRL_RETURN_IF_ERROR(writer->Append(row));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CollectProgress> Collect(BatchedEnv& envs, Policy& policy,
                                        const CollectOptions& options, DatasetWriter* writer) {
  if (options.num_episodes < 0 || options.num_env_steps < 0 ||
      (options.num_episodes == 0 && options.num_env_steps == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("num_episodes (", options.num_episodes,
                                                   ") and num_env_steps (", options.num_env_steps,
                                                   ") must be >= 0 and at least one > 0"));
  }
  if (!(options.action_noise >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("action_noise: ", options.action_noise, " must be >= 0"));
  }
  const int n = envs.size();
  const size_t obs_dim = envs.obs_dim(), act_dim = envs.act_dim();
  const std::vector<InfoField> fields = envs.env(0).info_fields();
  const size_t info_dim = envs.env(0).info_dim();
  const int64_t max_attempts = options.max_attempted_episodes > 0
                                   ? options.max_attempted_episodes
                                   : 100 * options.num_episodes + 100;
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(options.action_noise));

  std::vector<EpisodeBuffer> episodes(n);
  std::vector<float> actions(n * act_dim);
  BatchedEnv::Output out;
  envs.set_record_info(info_dim > 0);
  envs.Reset(&out);
  for (int i = 0; i < n; ++i) policy.OnEpisodeStart(i, envs.env(i));

  CollectProgress progress;
  double return_sum = 0;
  bool stop_by_steps = false;
  while (true) {
    policy.Act(out.obs, absl::MakeSpan(actions));
    if (options.action_noise > 0) {
      for (float& a : actions) a = std::clamp(a + noise(rng), -1.0f, 1.0f);
    } else {
      for (float& a : actions) a = std::clamp(a, -1.0f, 1.0f);
    }
    // the observation the action was taken in, before Step overwrites out.obs
    for (int i = 0; i < n; ++i) {
      EpisodeBuffer& e = episodes[i];
      e.obs.insert(e.obs.end(), out.obs.begin() + i * obs_dim, out.obs.begin() + (i + 1) * obs_dim);
      e.actions.insert(e.actions.end(), actions.begin() + i * act_dim,
                       actions.begin() + (i + 1) * act_dim);
    }
    envs.Step(actions, &out);
    progress.steps += n;
    for (int i = 0; i < n; ++i) {
      EpisodeBuffer& e = episodes[i];
      e.next_obs.insert(e.next_obs.end(), out.next_obs.begin() + i * obs_dim,
                        out.next_obs.begin() + (i + 1) * obs_dim);
      e.rewards.push_back(out.rewards[i]);
      e.terminals.push_back(out.terminated[i]);
      e.timeouts.push_back(out.truncated[i]);
      e.episode_return += out.rewards[i];
      // infos describe the state the step led to (taken before an auto-reset)
      e.infos.insert(e.infos.end(), out.next_info.begin() + i * info_dim,
                     out.next_info.begin() + (i + 1) * info_dim);
      if (!out.terminated[i] && !out.truncated[i]) continue;
      ++progress.episodes;
      return_sum += e.episode_return;
      const bool success = out.success[i] != 0;
      progress.successes += success;
      const bool episodes_full =
          options.num_episodes > 0 && progress.kept_episodes >= options.num_episodes;
      if ((success || !options.success_only) && !episodes_full) {
        PRL_RETURN_IF_ERROR(WriteEpisode(e, envs.env(i), fields, writer));
        ++progress.kept_episodes;
        progress.kept_steps += e.size();
      }
      e.Clear();
      policy.OnEpisodeStart(i, envs.env(i));
    }
    progress.mean_return = progress.episodes > 0 ? return_sum / progress.episodes : 0;
    if (options.on_progress) options.on_progress(progress);
    if (options.num_episodes > 0 && progress.kept_episodes >= options.num_episodes) break;
    if (options.num_env_steps > 0 && progress.steps >= options.num_env_steps) {
      stop_by_steps = true;
      break;
    }
    if (options.success_only && progress.episodes >= max_attempts) {
      return absl::FailedPreconditionError(
          absl::StrCat("only ", progress.kept_episodes, " of ", progress.episodes,
                       " episodes succeeded; gave up before reaching ", options.num_episodes));
    }
  }
  if (stop_by_steps && !options.success_only) {
    for (int i = 0; i < n; ++i) {
      EpisodeBuffer& e = episodes[i];
      if (e.size() == 0) continue;
      e.timeouts.back() = 1;
      PRL_RETURN_IF_ERROR(WriteEpisode(e, envs.env(i), fields, writer));
      progress.kept_steps += e.size();
    }
  }
  return progress;
}

}  // namespace prl::actor
