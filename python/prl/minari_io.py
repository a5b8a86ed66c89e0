"""PRL datasets to and from Minari (https://minari.farama.org), the Farama Foundation's format
for offline RL datasets: episodes of observations (T + 1 rows), actions, rewards,
terminations, truncations and infos.

A PRL dataset is a flat table of transitions whose episodes end at terminal or timeout rows
(the last one may be unfinished). Exporting turns each episode into a Minari episode:
observations are the episode's observations followed by the last row's next observation;
terminals become terminations and timeouts truncations; each info column becomes an info
array of T + 1 rows whose first row, the reset info PRL does not record, is NaN (PRL's info
row i describes the state row i led to, which is Minari's info row i + 1). The dataset's
metadata (env_spec, collector, seed, prl_version, format) is kept in the Minari metadata under
"prl", so importing what was exported gives back a bit-identical dataset.

Importing any Minari dataset with Box observation and action spaces (flattened to vectors)
gives the PRL dataset of its transitions: next observations from the following observation,
numeric infos (nested ones named "outer.inner") without their reset row. An episode that
ends neither terminated nor truncated, other than the last, gets timeout True on its last row,
so that PRL sees where it ends.

Minari keeps datasets under $MINARI_DATASETS_PATH (default ~/.minari/datasets).
"""

import os
import warnings

import numpy as np

from prl.datasets import FORMAT, Dataset, DatasetMetadata, read_dataset
from prl.errors import DatasetError


def _minari():
    try:
        import gymnasium
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as e:
        raise ImportError(f"Minari interoperability needs the minari package ({e}); install it "
                          "with pip install 'minari>=0.5' (scripts/setup.sh --client does)") \
            from None
    return minari, gymnasium, EpisodeBuffer


def _check_consecutive(dataset, ends):
    """Raises DatasetError when a row's next observation is not the next row's observation
    inside an episode: Minari holds one observation sequence per episode."""
    inner = np.ones(len(dataset), bool)
    inner[ends - 1] = False
    rows = np.flatnonzero(inner)
    if len(rows) == 0:
        return
    nxt = dataset.next_observations[rows].view(np.uint32)
    following = dataset.observations[rows + 1].view(np.uint32)
    differ = np.flatnonzero((nxt != following).any(axis=1))
    if len(differ):
        i = int(rows[differ[0]])
        raise DatasetError(
            f"next_observations[{i}] differs from observations[{i + 1}] inside an episode; a "
            "Minari episode holds one sequence of observations, so this dataset cannot be "
            "exported without loss")


def to_minari(dataset, dataset_id, *, author=None, author_email=None, code_permalink=None,
              description=None, data_format="hdf5"):
    """Exports a PRL dataset (a prl.Dataset or the path of a dataset file) as the Minari
    dataset `dataset_id` (e.g. "prl/maze-planner-v0") and returns the minari.MinariDataset.

    author, author_email, code_permalink, description: Minari's metadata (the description
    defaults to one naming the PRL collector and environment). data_format: Minari's storage,
    "hdf5" (default) or "arrow".
    Raises DatasetError for an empty dataset or one whose next observations are not the
    following observations inside an episode; Minari's own errors (e.g. an existing id) as
    they are.
    """
    minari, gymnasium, EpisodeBuffer = _minari()
    if isinstance(dataset, (str, os.PathLike)):
        dataset = read_dataset(dataset)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"to_minari takes a prl.Dataset or a path, not {type(dataset).__name__}")
    if len(dataset) == 0:
        raise DatasetError("the dataset is empty; Minari needs at least one episode")
    ends = dataset.episode_ends()
    _check_consecutive(dataset, ends)
    starts = np.concatenate([[0], ends[:-1]])
    buffers = []
    for k, (s, e) in enumerate(zip(starts, ends)):
        infos = {name: np.concatenate([np.full((1,) + v.shape[1:], np.nan, np.float32), v[s:e]])
                 for name, v in dataset.infos.items()}
        buffers.append(EpisodeBuffer(
            id=k,
            observations=np.concatenate([dataset.observations[s:e],
                                         dataset.next_observations[e - 1:e]]),
            actions=dataset.actions[s:e],
            rewards=dataset.rewards[s:e],
            terminations=dataset.terminals[s:e],
            truncations=dataset.timeouts[s:e],
            infos=infos or None))
    bound = 1.0 if np.all(np.abs(dataset.actions) <= 1) else np.inf
    spaces = gymnasium.spaces
    observation_space = spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)
    action_space = spaces.Box(-bound, bound, (dataset.act_dim,), np.float32)
    m = dataset.metadata
    if description is None:
        description = (f"PRL dataset ({FORMAT}) collected by '{m.collector}'"
                       + (f" in env_spec {{ {' '.join(m.env_spec.split())} }}"
                          if m.env_spec else ""))
    with warnings.catch_warnings():
        # Minari recommends an author, email, permalink and a gymnasium environment: the first
        # are the caller's to give, and PRL's environments are not gymnasium's
        warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None)",
                                category=UserWarning)
        result = minari.create_dataset_from_buffers(
            dataset_id, buffers, env=None, algorithm_name=m.collector or "prl",
            author=author, author_email=author_email, code_permalink=code_permalink,
            action_space=action_space, observation_space=observation_space,
            description=description, data_format=data_format)
    result.storage.update_metadata({"prl": {
        "format": FORMAT, "env_spec": m.env_spec, "collector": m.collector,
        "seed": int(m.seed), "prl_version": m.prl_version,
        "infos": list(dataset.infos), "reset_info_row": "nan",
    }})
    return result


def _flat_box(space, what):
    import gymnasium

    if not isinstance(space, gymnasium.spaces.Box):
        raise DatasetError(f"the Minari dataset's {what} space is {type(space).__name__}; PRL "
                           "datasets hold vectors (Box spaces)")
    return int(np.prod(space.shape, dtype=np.int64))


def _flat_infos(infos, prefix=""):
    """{name: array} of the numeric arrays in a (nested) Minari info dict."""
    out = {}
    for key, value in (infos or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_infos(value, name + "."))
            continue
        array = np.asarray(value)
        if array.dtype.kind in "biuf" and array.ndim >= 1 and "/" not in name:
            out[name] = array
    return out


def from_minari(dataset):
    """Imports a Minari dataset (a minari.MinariDataset or a dataset id) as a prl.Dataset.
    Save it with prl.write_dataset (or Dataset.write) to train priors on it.

    Raises DatasetError when a space is not a Box or an episode is malformed.
    """
    minari, _, _ = _minari()
    if isinstance(dataset, str):
        dataset = minari.load_dataset(dataset)
    obs_dim = _flat_box(dataset.observation_space, "observation")
    act_dim = _flat_box(dataset.action_space, "action")
    prl = dataset.storage.metadata.get("prl")
    columns = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                               "next_observations")}
    infos, info_names = {}, None
    episodes = list(dataset.iterate_episodes())
    for k, episode in enumerate(episodes):
        steps = len(episode.rewards)
        observations = np.asarray(episode.observations).reshape(steps + 1, obs_dim)
        terminals = np.asarray(episode.terminations, bool).copy()
        timeouts = np.asarray(episode.truncations, bool).copy()
        if len(terminals) != steps or len(timeouts) != steps:
            raise DatasetError(f"Minari episode {episode.id}: {steps} rewards but "
                               f"{len(terminals)} terminations and {len(timeouts)} truncations")
        if steps and k < len(episodes) - 1 and not (terminals[-1] or timeouts[-1]):
            timeouts[-1] = True  # so that PRL sees the episode end here
        columns["observations"].append(observations[:-1])
        columns["next_observations"].append(observations[1:])
        columns["actions"].append(np.asarray(episode.actions).reshape(steps, act_dim))
        columns["rewards"].append(np.asarray(episode.rewards))
        columns["terminals"].append(terminals)
        columns["timeouts"].append(timeouts)
        flat = {}
        for name, array in _flat_infos(episode.infos).items():
            if len(array) == steps + 1:
                flat[name] = array[1:]  # without the reset info
            elif len(array) == steps:
                flat[name] = array
        names = {n: flat[n].shape[1:] for n in flat}
        info_names = names if info_names is None else {
            n: s for n, s in info_names.items() if names.get(n) == s}
        for name, array in flat.items():
            infos.setdefault(name, []).append(array)
    if not episodes:
        raise DatasetError("the Minari dataset has no episodes")
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    info_arrays = {}
    for name in sorted(info_names or {}):
        values = np.concatenate(infos[name]).astype(np.float32)
        if np.isfinite(values).all():
            info_arrays[name] = values
        else:
            warnings.warn(f"Minari info '{name}' has non-finite values; PRL datasets keep only "
                          "finite info columns, so it is left out")
    if prl:
        metadata = DatasetMetadata(env_spec=prl.get("env_spec", ""),
                                   collector=prl.get("collector", ""),
                                   seed=int(prl.get("seed", 0)),
                                   prl_version=prl.get("prl_version", ""))
    else:
        algorithm = dataset.storage.metadata.get("algorithm_name")
        metadata = DatasetMetadata(
            collector=f"minari:{dataset.spec.dataset_id}"
            + (f" algorithm={algorithm}" if algorithm else ""))
    return Dataset(infos=info_arrays, metadata=metadata, **arrays)
