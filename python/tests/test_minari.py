"""PRL datasets to and from Minari, with the real minari library: a dataset prl_collect wrote,
exported and imported again, is bit-identical (arrays and attributes); a dataset Minari
created itself imports as a PRL dataset that PRL's C++ reader reads."""

import numpy as np
import pytest

import prl
from test_datasets import assert_matches_cpp, cpp_read, describe

minari = pytest.importorskip("minari", reason="scripts/setup.sh --client installs minari")
gymnasium = pytest.importorskip("gymnasium")
from minari.data_collector import EpisodeBuffer  # noqa: E402


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Minari's datasets in a directory of the test's own."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def test_export_and_import_again_is_identical(maze_file, cheetah_file, tmp_path):
    for k, path in enumerate((maze_file, cheetah_file)):
        original = prl.read_dataset(path)
        exported = prl.to_minari(original, f"prl/roundtrip{k}-v0", author="PRL tests")
        # what Minari itself sees, loaded afresh
        loaded = minari.load_dataset(f"prl/roundtrip{k}-v0")
        ends = original.episode_ends()
        assert loaded.total_episodes == len(ends) == exported.total_episodes
        assert loaded.total_steps == len(original)
        first = next(loaded.iterate_episodes())
        assert first.observations.shape == (ends[0] + 1, original.obs_dim)
        assert first.observations.dtype == np.float32 and first.actions.dtype == np.float32
        np.testing.assert_array_equal(first.observations[:-1], original.observations[:ends[0]])
        np.testing.assert_array_equal(first.observations[-1],
                                      original.next_observations[ends[0] - 1])
        np.testing.assert_array_equal(first.terminations, original.terminals[:ends[0]])
        np.testing.assert_array_equal(first.truncations, original.timeouts[:ends[0]])
        assert set(first.infos) == set(original.infos)
        for name, values in original.infos.items():
            assert np.isnan(first.infos[name][0]).all()  # the reset info PRL does not record
            np.testing.assert_array_equal(first.infos[name][1:], values[:ends[0]])
        assert loaded.storage.metadata["prl"]["collector"] == original.metadata.collector
        assert loaded.storage.metadata["algorithm_name"] == original.metadata.collector

        back = prl.from_minari(f"prl/roundtrip{k}-v0")
        assert back.equals(original)
        assert not back.derived_next_observations
        copy = back.write(tmp_path / f"back{k}.hdf5")
        assert describe(copy) == describe(path)  # arrays, types, attributes: identical


def test_export_of_a_file_written_by_the_package(tmp_path):
    rng = np.random.default_rng(4)
    obs = rng.normal(size=(21, 3)).astype(np.float32)
    # three episodes, the last unfinished; next observations follow inside episodes
    ends = [5, 12, 21]
    next_obs = np.roll(obs, -1, axis=0)
    next_obs[[4, 11, 20]] = rng.normal(size=(3, 3))
    terminals = np.zeros(21, bool)
    terminals[4] = True
    timeouts = np.zeros(21, bool)
    timeouts[11] = True
    dataset = prl.Dataset(observations=obs, actions=rng.uniform(-1, 1, (21, 2)),
                          rewards=rng.normal(size=21), terminals=terminals, timeouts=timeouts,
                          next_observations=next_obs,
                          infos={"grid": rng.normal(size=(21, 2, 2))},
                          metadata=prl.DatasetMetadata(collector="python", seed=11))
    assert dataset.episode_ends().tolist() == ends
    path = dataset.write(tmp_path / "mine.hdf5")
    exported = prl.to_minari(str(path), "mine-v0")
    episodes = list(exported.iterate_episodes())
    assert [len(e) for e in episodes] == [5, 7, 9]
    assert not episodes[-1].terminations[-1] and not episodes[-1].truncations[-1]
    assert episodes[0].infos["grid"].shape == (6, 2, 2)
    assert prl.from_minari(exported).equals(prl.read_dataset(path))

    # a next observation that is not the following observation cannot be exported
    next_obs[2] += 1
    broken = prl.Dataset(observations=obs, actions=dataset.actions, rewards=dataset.rewards,
                         terminals=terminals, timeouts=timeouts, next_observations=next_obs)
    with pytest.raises(prl.DatasetError, match=r"next_observations\[2\] differs"):
        prl.to_minari(broken, "broken-v0")
    with pytest.raises(prl.DatasetError, match="empty"):
        prl.to_minari(prl.Dataset(observations=np.zeros((0, 1)), actions=np.zeros((0, 1)),
                                  rewards=np.zeros(0), terminals=np.zeros(0)), "empty-v0")


def minari_native(dataset_id, rng):
    """A Minari dataset made by Minari from episode buffers: float64 Box observations of
    shape (2, 2), nested infos, an episode cut without a flag, the last one unfinished."""
    lengths = [4, 6, 3, 5]
    buffers = []
    for k, t in enumerate(lengths):
        terminations = np.zeros(t, bool)
        truncations = np.zeros(t, bool)
        if k == 0:
            terminations[-1] = True
        elif k == 1:
            truncations[-1] = True
        # episode 2 ends with neither flag; episode 3 (the last) is unfinished
        buffers.append(EpisodeBuffer(
            id=k, seed=100 + k, observations=rng.normal(size=(t + 1, 2, 2)),
            actions=rng.uniform(-1, 1, size=(t, 3)).astype(np.float32),
            rewards=rng.normal(size=t), terminations=terminations, truncations=truncations,
            infos={"success": np.zeros(t + 1, bool), "pose": {"x": rng.normal(size=t + 1)},
                   "tag": np.array([b"a"] * (t + 1))}))
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2, 2), np.float64)
    action_space = gymnasium.spaces.Box(-1, 1, (3,), np.float32)
    return minari.create_dataset_from_buffers(
        dataset_id, buffers, env=None, algorithm_name="random", author="PRL tests",
        author_email="none", code_permalink="none", description="made by minari",
        observation_space=observation_space, action_space=action_space), buffers


def test_import_a_dataset_minari_made(tmp_path):
    native, buffers = minari_native("native/points-v0", np.random.default_rng(7))
    dataset = prl.from_minari("native/points-v0")
    assert len(dataset) == 18 and dataset.obs_dim == 4 and dataset.act_dim == 3
    assert dataset.episode_ends().tolist() == [4, 10, 13, 18]
    assert dataset.terminals.tolist().index(True) == 3
    assert np.flatnonzero(dataset.timeouts).tolist() == [9, 12]  # 12: the unflagged end
    b = buffers[1]
    np.testing.assert_array_equal(dataset.observations[4:10],
                                  b.observations[:-1].reshape(6, 4).astype(np.float32))
    np.testing.assert_array_equal(dataset.next_observations[4:10],
                                  b.observations[1:].reshape(6, 4).astype(np.float32))
    np.testing.assert_array_equal(dataset.rewards[4:10], b.rewards.astype(np.float32))
    # numeric infos, nested ones flattened, without their reset row; strings left out
    assert list(dataset.infos) == ["pose.x", "success"]
    np.testing.assert_array_equal(dataset.infos["pose.x"][4:10],
                                  b.infos["pose"]["x"][1:].astype(np.float32))
    assert dataset.metadata.collector == "minari:native/points-v0 algorithm=random"
    path = dataset.write(tmp_path / "from_minari.hdf5")
    assert_matches_cpp(prl.read_dataset(path), cpp_read(path))


def test_spaces_other_than_box_are_refused():
    buffers = [EpisodeBuffer(id=0, observations=np.arange(3), actions=np.zeros((2, 1)),
                             rewards=np.zeros(2), terminations=np.array([False, True]),
                             truncations=np.zeros(2, bool))]
    minari.create_dataset_from_buffers(
        "native/discrete-v0", buffers, env=None, algorithm_name="x", author="x",
        author_email="x", code_permalink="x", description="x",
        observation_space=gymnasium.spaces.Discrete(5),
        action_space=gymnasium.spaces.Box(-1, 1, (1,), np.float32))
    with pytest.raises(prl.DatasetError, match="observation space is Discrete"):
        prl.from_minari("native/discrete-v0")
