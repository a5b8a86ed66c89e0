"""prl.read_dataset / prl.write_dataset against PRL's C++ dataset code: files prl_collect and
dataset_tool (DatasetWriter) write are read, written again and compared with h5py down to the
HDF5 types, filters and attributes; what the package writes is read back by dataset_tool
(ReadDataset)."""

import json
import os
import subprocess

import h5py
import numpy as np
import pytest

import prl
from conftest import binary


def cpp_read(path):
    """The dataset as PRL's C++ ReadDataset sees it (dataset_tool's JSON)."""
    result = subprocess.run([binary("tests/dataset_tool"), "read", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_matches_cpp(dataset, d):
    assert d["size"] == len(dataset) and d["obs_dim"] == dataset.obs_dim
    assert d["act_dim"] == dataset.act_dim
    assert d["derived_next_observations"] == dataset.derived_next_observations
    for key in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_array_equal(np.float32(d[key]), getattr(dataset, key).reshape(-1),
                                      err_msg=key)
    for key in ("terminals", "timeouts"):
        assert d[key] == getattr(dataset, key).astype(int).tolist(), key
    assert d["episode_ends"] == dataset.episode_ends().tolist()
    assert list(d["infos"]) == list(dataset.infos)
    for name, values in dataset.infos.items():
        assert d["infos"][name]["dims"] == list(values.shape[1:])
        np.testing.assert_array_equal(np.float32(d["infos"][name]["values"]),
                                      values.reshape(-1), err_msg=name)
    m = dataset.metadata
    assert d["metadata"] == {"env_spec": m.env_spec, "collector": m.collector, "seed": m.seed,
                             "prl_version": m.prl_version}


def describe(path):
    """Everything about a dataset file that must survive a round trip: per dataset its HDF5
    type, shape, max shape, chunks, filters and bytes; per root attribute its HDF5 type and
    value."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                plist = node.id.get_create_plist()
                filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
                out[name] = (node.id.get_type().encode(), node.shape, node.maxshape,
                             node.chunks, filters, node.compression_opts,
                             node[()].tobytes())
        f.visititems(visit)
        for name in f.attrs:
            attr = h5py.h5a.open(f.id, name.encode())
            out[f"@{name}"] = (attr.get_type().encode(), attr.shape, f.attrs[name])
    return out


def test_read_a_collected_dataset(maze_file):
    dataset = prl.read_dataset(maze_file)
    n = len(dataset)
    assert n > 100 and dataset.obs_dim == 4 and dataset.act_dim == 2
    assert dataset.observations.dtype == np.float32 and dataset.observations.shape == (n, 4)
    assert dataset.rewards.dtype == np.float32 and dataset.rewards.shape == (n,)
    assert dataset.terminals.dtype == np.bool_ and dataset.timeouts.dtype == np.bool_
    assert list(dataset.infos) == ["goal", "qpos", "qvel"]
    assert not dataset.derived_next_observations
    assert len(dataset.episode_ends()) == 6 and dataset.terminals.sum() == 6
    m = dataset.metadata
    assert m.seed == 5 and m.collector.startswith("scripted:planner")
    assert "DOMAIN_POINT_MAZE" in m.env_spec and m.prl_version
    # inside an episode, a row's next observation is the following row's observation
    ends = dataset.episode_ends()
    inner = np.setdiff1d(np.arange(n - 1), ends - 1)
    np.testing.assert_array_equal(dataset.next_observations[inner],
                                  dataset.observations[inner + 1])
    assert_matches_cpp(dataset, cpp_read(maze_file))


@pytest.mark.parametrize("which", ["maze", "cheetah"])
def test_write_what_was_read_is_identical(which, maze_file, cheetah_file, tmp_path):
    original = maze_file if which == "maze" else cheetah_file
    dataset = prl.read_dataset(original)
    copy = prl.write_dataset(dataset, str(tmp_path / "copy.hdf5"))
    assert describe(copy) == describe(original)
    again = prl.read_dataset(copy)
    assert again.equals(dataset)
    # PRL's C++ reader reads the copy as it reads the original
    assert cpp_read(copy) == cpp_read(original)


def test_write_with_chunks_and_compression_like_the_cpp_writer(tmp_path):
    """dataset_tool's file: 16-row chunks, gzip 1 (with shuffle), infos of rank 1 and 2."""
    original = str(tmp_path / "cpp.hdf5")
    result = subprocess.run([binary("tests/dataset_tool"), "write", original],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    dataset = prl.read_dataset(original)
    assert dataset.infos["grid"].shape == (50, 2, 3)
    copy = dataset.write(tmp_path / "py.hdf5", chunk_rows=16, compression=1)
    assert describe(copy) == describe(original)
    assert_matches_cpp(dataset, cpp_read(copy))


def test_a_new_dataset_is_read_by_the_cpp_reader(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    dataset = prl.Dataset(
        observations=rng.normal(size=(n, 3)),  # float64, converted to float32
        actions=rng.uniform(-1, 1, size=(n, 2)), rewards=np.arange(n),
        terminals=np.arange(n) % 10 == 9, timeouts=np.zeros(n, np.int8),
        next_observations=rng.normal(size=(n, 3)),
        infos={"goal": rng.normal(size=(n, 2)), "image": rng.normal(size=(n, 2, 2))},
        metadata=prl.DatasetMetadata(env_spec='domain: DOMAIN_POINT_MAZE\n',
                                     collector="python", seed=-3))
    assert dataset.observations.dtype == np.float32 and dataset.rewards.dtype == np.float32
    path = dataset.write(tmp_path / "new.hdf5")
    d = cpp_read(path)
    assert d["metadata"]["prl_version"] == prl.__version__  # filled in when empty
    dataset.metadata.prl_version = prl.__version__
    assert_matches_cpp(dataset, d)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "prl-d4rl-1" and f.attrs["seed"] == -3
        assert f["terminals"].dtype == np.bool_ and f["observations"].chunks == (4096, 3)
        assert f["observations"].fletcher32 and f["observations"].maxshape == (None, 3)


def test_a_d4rl_file_from_elsewhere(tmp_path):
    """float64 columns, no next_observations or timeouts, non-numeric infos, other keys: read
    as PRL's reader reads it."""
    path = str(tmp_path / "d4rl.h5")
    rng = np.random.default_rng(1)
    n = 12
    terminals = np.zeros(n, bool)
    terminals[4] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 3))
        f["actions"] = rng.uniform(-1, 1, size=(n, 2)).astype(np.float16)
        f["rewards"] = rng.normal(size=n)
        f["terminals"] = terminals
        f["infos/goal"] = rng.normal(size=(n, 2))
        f["infos/label"] = np.array([b"x"] * n)
        f["extra_key"] = np.arange(3)
        f.attrs["collector"] = np.bytes_(b"d4rl")  # a fixed-length string
        f.attrs["seed"] = np.int32(-7)
    dataset = prl.read_dataset(path)
    assert dataset.derived_next_observations and list(dataset.infos) == ["goal"]
    assert not dataset.timeouts.any()
    assert dataset.episode_ends().tolist() == [5, 12]
    np.testing.assert_array_equal(dataset.next_observations[3], dataset.observations[4])
    np.testing.assert_array_equal(dataset.next_observations[4], dataset.observations[4])
    np.testing.assert_array_equal(dataset.next_observations[11], dataset.observations[11])
    assert dataset.metadata == prl.DatasetMetadata(collector="d4rl", seed=-7)
    assert_matches_cpp(dataset, cpp_read(path))


def test_malformed_files_and_arrays_are_refused(tmp_path, maze_file):
    path = str(tmp_path / "no_rewards.h5")
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((3, 1))
        f["terminals"] = np.zeros(3, bool)
    with pytest.raises(prl.DatasetError, match=r"no_rewards\.h5.*'rewards' is missing"):
        prl.read_dataset(path)
    path = str(tmp_path / "nan.h5")
    with h5py.File(path, "w") as f:
        f["observations"] = np.array([[0.0], [np.nan]])
        f["actions"] = np.zeros((2, 1))
        f["rewards"] = np.zeros(2)
        f["terminals"] = np.zeros(2)
    with pytest.raises(prl.DatasetError, match=r"nan\.h5.*observations.*non-finite.*row 1"):
        prl.read_dataset(path)
    path = str(tmp_path / "rows.h5")
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((2, 1))
        f["rewards"] = np.zeros(3)
        f["terminals"] = np.zeros(3)
    with pytest.raises(prl.DatasetError, match="actions: has 2 rows but 'observations' has 3"):
        prl.read_dataset(path)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(prl.DatasetError, match="not a readable HDF5 file"):
        prl.read_dataset(text)
    with pytest.raises(FileNotFoundError):
        prl.read_dataset(tmp_path / "missing.h5")

    dataset = prl.read_dataset(maze_file)
    with pytest.raises(FileExistsError):
        dataset.write(maze_file)
    with pytest.raises(FileNotFoundError):
        dataset.write(tmp_path / "no" / "such" / "dir.hdf5")
    with pytest.raises(ValueError, match="compression"):
        dataset.write(tmp_path / "x.hdf5", compression=10)
    dataset.infos["goal"][0, 0] = np.inf
    with pytest.raises(prl.DatasetError, match="infos/goal.*non-finite"):
        dataset.write(tmp_path / "inf.hdf5")
    assert not os.path.exists(tmp_path / "inf.hdf5")
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]  # no temporary file left
    with pytest.raises(prl.DatasetError, match="rewards: has 2 rows"):
        prl.Dataset(observations=np.zeros((3, 1)), actions=np.zeros((3, 1)),
                    rewards=np.zeros(2), terminals=np.zeros(3))
    with pytest.raises(prl.DatasetError, match="infos"):
        prl.Dataset(observations=np.zeros((1, 1)), actions=np.zeros((1, 1)),
                    rewards=np.zeros(1), terminals=np.zeros(1), infos={"a/b": np.zeros(1)})
