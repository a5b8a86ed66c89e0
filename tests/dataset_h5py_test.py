"""Checks PRL's HDF5 datasets against h5py, the library D4RL users read them with.

Usage: dataset_h5py_test.py <dataset_tool> <scratch_dir>

1. dataset_tool writes a dataset with PRL's DatasetWriter; h5py must see the D4RL keys with
   the right dtypes (bool terminals/timeouts, float32 columns), shapes, chunking, values and
   str/int root attributes.
2. h5py writes D4RL-like files (float64 observations, no next_observations or timeouts, extra
   keys, non-numeric infos); dataset_tool reads them with ReadDataset and prints JSON, whose
   derived next observations and flags must match what common/dataset_reader.h says.
3. A file without rewards is refused with an error naming the key.
"""

import json
import os
import subprocess
import sys

import h5py
import numpy as np

TOOL, SCRATCH = sys.argv[1], sys.argv[2]


def tool(mode, path, expect_ok=True):
    result = subprocess.run([TOOL, mode, path], capture_output=True, text=True)
    if expect_ok and result.returncode != 0:
        raise AssertionError(f"dataset_tool {mode} {path} failed: {result.stderr}")
    return result


def check_prl_file():
    path = os.path.join(SCRATCH, "prl.h5")
    tool("write", path)
    n, i = 50, np.arange(50, dtype=np.float32)[:, None]
    expected = {
        "observations": (i + np.arange(4, dtype=np.float32) / 8).astype(np.float32),
        "actions": ((np.arange(2, dtype=np.float32) - i) / 4).astype(np.float32),
        "rewards": (i[:, 0] / 2 - 1).astype(np.float32),
        "terminals": np.arange(n) % 10 == 9,
        "timeouts": (np.arange(n) % 13 == 12) & ~(np.arange(n) % 10 == 9),
        "infos/goal": (10 * i + np.arange(2)).astype(np.float32),
        "infos/grid": (-(6 * i + np.arange(6))).reshape(n, 2, 3).astype(np.float32),
    }
    expected["next_observations"] = expected["observations"] + np.float32(1)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"observations", "actions", "rewards", "terminals", "timeouts",
                                 "next_observations", "infos"}, set(f.keys())
        assert set(f["infos"].keys()) == {"goal", "grid"}, set(f["infos"].keys())
        for key, want in expected.items():
            ds = f[key]
            assert ds.dtype == want.dtype, (key, ds.dtype, want.dtype)
            assert ds.shape == want.shape, (key, ds.shape, want.shape)
            assert ds.chunks == (16,) + want.shape[1:], (key, ds.chunks)
            assert ds.maxshape == (None,) + want.shape[1:], (key, ds.maxshape)
            assert ds.compression == "gzip" and ds.compression_opts == 1, key
            np.testing.assert_array_equal(ds[()], want, err_msg=key)
        assert f["terminals"].dtype == np.bool_ and f["timeouts"].dtype == np.bool_
        attrs = f.attrs
        for name, want in [("env_spec", 'domain: "point_maze"\n'), ("collector", "random"),
                           ("format", "prl-d4rl-1")]:
            assert isinstance(attrs[name], str), (name, type(attrs[name]))
            assert attrs[name] == want, (name, attrs[name])
        assert isinstance(attrs["prl_version"], str) and attrs["prl_version"], attrs["prl_version"]
        assert attrs["seed"].dtype == np.int64 and attrs["seed"] == 42, attrs["seed"]
        prl_version = attrs["prl_version"]

    # and PRL's reader agrees with h5py
    d = json.loads(tool("read", path).stdout)
    assert d["size"] == n and d["obs_dim"] == 4 and d["act_dim"] == 2
    assert d["derived_next_observations"] is False
    for key in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_array_equal(np.float32(d[key]), expected[key].reshape(-1), err_msg=key)
    for key in ("terminals", "timeouts"):
        np.testing.assert_array_equal(np.array(d[key], bool), expected[key], err_msg=key)
    for name in ("goal", "grid"):
        np.testing.assert_array_equal(np.float32(d["infos"][name]["values"]),
                                      expected["infos/" + name].reshape(-1), err_msg=name)
    assert d["infos"]["grid"]["dims"] == [2, 3]
    assert d["metadata"] == {"env_spec": 'domain: "point_maze"\n', "collector": "random",
                             "seed": 42, "prl_version": prl_version}, d["metadata"]
    print("PRL file read by h5py: ok")


def expected_derived_next(obs, ends_episode):
    """Row i's successor, or row i itself at an episode end or the last row."""
    n = len(obs)
    source = [i if ends_episode[i] or i == n - 1 else i + 1 for i in range(n)]
    return obs[source]


def check_d4rl_file():
    path = os.path.join(SCRATCH, "d4rl.h5")
    n = 12
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3))  # float64, as D4RL stores many
    actions = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    rewards = rng.normal(size=n)
    terminals = np.zeros(n, bool)
    terminals[4] = True
    goal = rng.normal(size=(n, 2))
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = actions
        f["rewards"] = rewards
        f["terminals"] = terminals
        f["infos/goal"] = goal
        f["infos/label"] = np.array([b"x"] * n)  # not numeric: skipped
        f["extra_key"] = np.arange(3)
        f["metadata/algorithm"] = b"SAC"  # D4RL-style metadata group: ignored
    d = json.loads(tool("read", path).stdout)
    assert d["size"] == n and d["obs_dim"] == 3 and d["act_dim"] == 2, d
    assert d["derived_next_observations"] is True
    obs32 = obs.astype(np.float32)
    np.testing.assert_array_equal(np.float32(d["observations"]), obs32.reshape(-1))
    np.testing.assert_array_equal(np.float32(d["actions"]), actions.reshape(-1))
    np.testing.assert_array_equal(np.float32(d["rewards"]), rewards.astype(np.float32))
    np.testing.assert_array_equal(np.float32(d["next_observations"]),
                                  expected_derived_next(obs32, terminals).reshape(-1))
    assert d["terminals"] == terminals.astype(int).tolist()
    assert d["timeouts"] == [0] * n
    assert d["episode_ends"] == [5, 12], d["episode_ends"]
    assert list(d["infos"]) == ["goal"], d["infos"].keys()
    np.testing.assert_array_equal(np.float32(d["infos"]["goal"]["values"]),
                                  goal.astype(np.float32).reshape(-1))
    assert d["metadata"] == {"env_spec": "", "collector": "", "seed": 0, "prl_version": ""}
    print("D4RL file without next_observations/timeouts read by PRL: ok")


def check_d4rl_file_with_timeouts_and_attributes():
    path = os.path.join(SCRATCH, "d4rl_timeouts.h5")
    n = 10
    obs = np.arange(n * 2, dtype=np.float64).reshape(n, 2) / 3
    terminals = np.zeros(n, np.int32)
    terminals[2] = 1
    timeouts = np.zeros(n, bool)
    timeouts[7] = True
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.ones((n, 1), np.float16)
        f["rewards"] = np.arange(n, dtype=np.int64)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        f.attrs["env_spec"] = np.bytes_(b"domain: \"cheetah\"")  # fixed-length string
        f.attrs["collector"] = "sac"
        f.attrs["seed"] = np.int32(-7)
    d = json.loads(tool("read", path).stdout)
    ends = terminals.astype(bool) | timeouts
    np.testing.assert_array_equal(np.float32(d["next_observations"]),
                                  expected_derived_next(obs.astype(np.float32), ends).reshape(-1))
    assert d["terminals"] == terminals.tolist() and d["timeouts"] == timeouts.astype(int).tolist()
    assert d["episode_ends"] == [3, 8, 10], d["episode_ends"]
    assert d["actions"] == [1.0] * n and d["rewards"] == list(range(n))
    assert d["metadata"] == {"env_spec": 'domain: "cheetah"', "collector": "sac", "seed": -7,
                             "prl_version": ""}, d["metadata"]
    print("D4RL file with timeouts and h5py attributes read by PRL: ok")


def check_malformed_file():
    path = os.path.join(SCRATCH, "no_rewards.h5")
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((3, 1))
        f["terminals"] = np.zeros(3, bool)
    result = tool("read", path, expect_ok=False)
    assert result.returncode == 1, result
    assert "INVALID_ARGUMENT" in result.stderr and "'rewards'" in result.stderr, result.stderr
    assert path in result.stderr, result.stderr
    print("file without rewards refused: ok")


check_prl_file()
check_d4rl_file()
check_d4rl_file_with_timeouts_and_attributes()
check_malformed_file()
print("all h5py checks passed")
