"""PRL's offline datasets: HDF5 files in the D4RL layout, read and written with h5py exactly as
the C++ side does (common/dataset.h, common/dataset_reader.h, common/dataset_writer.h).

A file holds, for N transitions:
  observations       (N, obs_dim) float32
  actions            (N, act_dim) float32
  rewards            (N,)         float32
  terminals          (N,)         bool   (h5py's bool: an int8 enum FALSE=0, TRUE=1)
  timeouts           (N,)         bool
  next_observations  (N, obs_dim) float32
  infos/<name>       (N, dims...) float32
as chunked datasets extendible along the first axis, each with the Fletcher-32 checksum
filter, in the HDF5 1.10 file format; and root attributes env_spec, collector, prl_version and
format ("prl-d4rl-1") as variable-length UTF-8 strings and seed as int64.

Infos describe the state a transition led to (row i's info goes with next_observations[i]).
"""

import dataclasses
import itertools
import os
import secrets

import h5py
import numpy as np

from prl._version import __version__
from prl.errors import DatasetError

# The value of the root attribute "format" in the files PRL writes.
FORMAT = "prl-d4rl-1"
# HDF5 refuses chunks of 4 GiB or more; like the C++ writer, keep every chunk under 2 GiB.
_MAX_CHUNK_BYTES = 1 << 31

_temp_counter = itertools.count()


@dataclasses.dataclass
class DatasetMetadata:
    """Who made a dataset; stored as attributes of the file's root group."""

    env_spec: str = ""  # text-format prl.v1.EnvSpec (may be empty for foreign files)
    collector: str = ""  # e.g. "scripted:planner action_noise=0.1", "random"
    seed: int = 0
    prl_version: str = ""  # write_dataset fills in prl.__version__ when empty


def _float_column(key, values, rank, finite=True):
    """`values` as a float32 array of `rank` dimensions (any rank >= 1 for rank 0)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{key}: must be numeric, not {array.dtype}")
    if (rank == 0 and array.ndim < 1) or (rank and array.ndim != rank):
        raise DatasetError(f"{key}: has rank {array.ndim}, expected "
                           f"{'at least 1' if rank == 0 else rank}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if finite and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DatasetError(f"{key}: holds a non-finite value ({array[tuple(bad)]}) at row "
                           f"{bad[0]}; values must be finite")
    return array


def _bool_column(key, values):
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{key}: must be bool or numeric, not {array.dtype}")
    if array.ndim != 1:
        raise DatasetError(f"{key}: has rank {array.ndim}, expected 1")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise DatasetError(f"{key}: holds NaN at row {int(np.argwhere(np.isnan(array))[0][0])}")
    return np.ascontiguousarray(array != 0, dtype=np.bool_)


@dataclasses.dataclass(eq=False)
class Dataset:
    """A whole dataset in memory, in the file's layout.

    The constructor takes any numeric arrays and converts them as PRL's reader does:
    observations, actions, rewards, next_observations and infos to float32 (all but the
    infos must be finite), terminals and timeouts to bool (non-zero is true). Without
    timeouts every row has timeout False; without next_observations they are derived (see
    derive_next_observations) and derived_next_observations is True. Row counts must agree.
    Raises DatasetError naming the key.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray = None
    next_observations: np.ndarray = None
    infos: dict = dataclasses.field(default_factory=dict)
    metadata: DatasetMetadata = dataclasses.field(default_factory=DatasetMetadata)
    derived_next_observations: bool = False

    def __post_init__(self):
        self.observations = _float_column("observations", self.observations, 2)
        n = len(self.observations)

        def check_rows(key, array):
            if len(array) != n:
                raise DatasetError(f"{key}: has {len(array)} rows but 'observations' has {n}")
            return array

        if self.observations.shape[1] == 0:
            raise DatasetError("observations: has 0 columns")
        self.actions = check_rows("actions", _float_column("actions", self.actions, 2))
        if self.actions.shape[1] == 0:
            raise DatasetError("actions: has 0 columns")
        self.rewards = check_rows("rewards", _float_column("rewards", self.rewards, 1))
        self.terminals = check_rows("terminals", _bool_column("terminals", self.terminals))
        if self.timeouts is None:
            self.timeouts = np.zeros(n, np.bool_)
        self.timeouts = check_rows("timeouts", _bool_column("timeouts", self.timeouts))
        if self.next_observations is None:
            self.next_observations = derive_next_observations(
                self.observations, self.terminals | self.timeouts)
            self.derived_next_observations = True
        self.next_observations = check_rows(
            "next_observations", _float_column("next_observations", self.next_observations, 2))
        if self.next_observations.shape[1] != self.observations.shape[1]:
            raise DatasetError(f"next_observations: has {self.next_observations.shape[1]} "
                               f"columns but 'observations' has {self.observations.shape[1]}")
        infos = {}
        for name in sorted(self.infos):
            if not isinstance(name, str) or not name or name == "." or "/" in name \
                    or "\0" in name:
                raise DatasetError(f"infos: name {name!r} must be a non-empty str, not '.', "
                                   "without '/'")
            key = f"infos/{name}"
            infos[name] = check_rows(key, _float_column(key, self.infos[name], 0, finite=False))
        self.infos = infos  # in name order, as HDF5 lists them
        if not isinstance(self.metadata, DatasetMetadata):
            raise TypeError("metadata must be a prl.DatasetMetadata")

    def __len__(self):
        return len(self.observations)

    def __repr__(self):
        m = self.metadata
        return (f"prl.Dataset({len(self)} transitions, {len(self.episode_ends())} episodes, "
                f"obs_dim {self.obs_dim}, act_dim {self.act_dim}, infos {list(self.infos)}, "
                f"collector {m.collector!r}, seed {m.seed}"
                + (", next_observations derived" if self.derived_next_observations else "")
                + ")")

    @property
    def obs_dim(self):
        return self.observations.shape[1]

    @property
    def act_dim(self):
        return self.actions.shape[1]

    def episode_ends(self):
        """Exclusive end row of each episode, in order: i + 1 for every row i that is terminal
        or a timeout, then len(self) when the last row is neither (an unfinished episode)."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        if len(self) and (len(ends) == 0 or ends[-1] != len(self)):
            ends = np.append(ends, len(self))
        return ends.astype(np.int64)

    def equals(self, other):
        """True when both hold bit-identical arrays (same dtypes, shapes and bytes), the same
        info columns and the same metadata."""
        def same(a, b):
            return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()

        return (isinstance(other, Dataset)
                and all(same(getattr(self, k), getattr(other, k)) for k in _COLUMNS)
                and list(self.infos) == list(other.infos)
                and all(same(self.infos[k], other.infos[k]) for k in self.infos)
                and self.metadata == other.metadata)

    def write(self, path, **kwargs):
        """write_dataset(self, path, **kwargs)."""
        return write_dataset(self, path, **kwargs)


_COLUMNS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def derive_next_observations(observations, ends_episode):
    """Next observations for a file without them, as PRL's reader derives them: row i gets
    observations[i + 1] unless it ends an episode (terminal or timeout) or is the last row,
    in which case it gets its own observation."""
    n = len(observations)
    source = np.arange(n) + 1
    source[np.asarray(ends_episode, bool)] -= 1
    if n:
        source[-1] = n - 1
    return observations[source]


# --- reading ----------------------------------------------------------------------------------

def _read_column(f, path, key, required=True):
    """The array at `key`, or None when it is missing and not required."""
    if key not in f:
        if required:
            raise DatasetError(f"dataset file '{path}': key '{key}' is missing")
        return None
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"dataset file '{path}': key '{key}' is not a dataset")
    if node.dtype.kind not in "biuf" and h5py.check_enum_dtype(node.dtype) is None:
        raise DatasetError(f"dataset file '{path}': key '{key}' is not numeric ({node.dtype})")
    try:
        return node[()]
    except OSError as e:  # e.g. a Fletcher-32 checksum mismatch
        raise DatasetError(f"dataset file '{path}': key '{key}' cannot be read: {e}") from None


def _string_attribute(attrs, name):
    if name not in attrs:
        return ""
    value = attrs[name]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "SUO":
        value = value.reshape(()).item()
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return ""  # a foreign attribute of the same name: not ours


def _int_attribute(attrs, name):
    if name not in attrs:
        return 0
    value = np.asarray(attrs[name])
    if value.dtype.kind in "iu" and value.size == 1:
        return int(value.reshape(()))
    return 0


def read_dataset(path):
    """Reads a dataset file, PRL's own or a D4RL file from elsewhere, as PRL's reader does:
    numeric columns of any type become float32, terminals/timeouts bool; missing timeouts are
    all False; missing next_observations are derived (derived_next_observations is then
    True); numeric infos/<name> datasets with N rows are read, other infos entries skipped;
    other top-level keys are ignored; missing metadata attributes take their defaults.

    Raises FileNotFoundError for a missing file, DatasetError naming the file and the key for
    a file that is not HDF5, a missing or malformed key, disagreeing row counts or non-finite
    values.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DatasetError(f"dataset file '{path}' is a directory")
    if not os.path.exists(path):
        raise FileNotFoundError(f"cannot read dataset file '{path}': no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"dataset file '{path}' is not a readable HDF5 file: {e}") from None
    with f:
        columns = {key: _read_column(f, path, key, required)
                   for key, required in (("observations", True), ("actions", True),
                                         ("rewards", True), ("terminals", True),
                                         ("timeouts", False), ("next_observations", False))}
        infos = {}
        group = f.get("infos")
        if isinstance(group, h5py.Group):
            n = len(columns["observations"])
            for name in sorted(group):
                node = group.get(name)
                if not isinstance(node, h5py.Dataset) or node.dtype.kind not in "biuf":
                    continue  # non-numeric entries and subgroups are skipped
                if node.ndim < 1 or node.shape[0] != n:
                    raise DatasetError(
                        f"dataset file '{path}': key 'infos/{name}' has "
                        f"{node.shape[0] if node.ndim else 0} rows but 'observations' has {n}")
                infos[name] = _read_column(f, path, f"infos/{name}")
        metadata = DatasetMetadata(
            env_spec=_string_attribute(f.attrs, "env_spec"),
            collector=_string_attribute(f.attrs, "collector"),
            seed=_int_attribute(f.attrs, "seed"),
            prl_version=_string_attribute(f.attrs, "prl_version"))
    try:
        return Dataset(infos=infos, metadata=metadata, **columns)
    except DatasetError as e:
        raise DatasetError(f"dataset file '{path}': {e}") from None


# --- writing ----------------------------------------------------------------------------------

def _check_chunk(key, row_shape, chunk_rows):
    if any(d <= 0 for d in row_shape):
        raise ValueError(f"{key}: every dimension of a row must be > 0, got {list(row_shape)}")
    row = int(np.prod(row_shape, dtype=np.int64)) * 4
    if chunk_rows > _MAX_CHUNK_BYTES // max(row, 1):
        raise ValueError(f"chunk_rows {chunk_rows} makes chunks over 2 GiB for {key}")


def _fsync(path, flags):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_dataset(dataset, path, *, chunk_rows=4096, compression=0):
    """Writes `dataset` to a new file at `path`, as PRL's writer does (see the module doc):
    the file is built under a temporary name beside `path`, fsynced, and linked to `path` only
    when complete, never replacing a file there; then the directory is fsynced.

    chunk_rows: HDF5 chunk size in rows (> 0). compression: gzip level 0-9 (0: none; with a
    level the shuffle filter too).
    Returns `path`. Raises FileExistsError when `path` exists, FileNotFoundError when its
    directory does not, ValueError for bad options, DatasetError for non-finite values
    (naming the key and the row).
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"write_dataset takes a prl.Dataset, not {type(dataset).__name__}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be an int > 0, got {chunk_rows!r}")
    if isinstance(compression, bool) or not isinstance(compression, int) \
            or not 0 <= compression <= 9:
        raise ValueError(f"compression must be a gzip level in 0-9, got {compression!r}")
    m = dataset.metadata
    for field in ("env_spec", "collector", "prl_version"):
        if "\0" in getattr(m, field):
            raise ValueError(f"metadata.{field} contains a NUL character")
    for name, values in dataset.infos.items():
        _float_column(f"infos/{name}", values, 0)  # finite, as the C++ writer requires
    path = os.fspath(path)
    if os.path.lexists(path):
        raise FileExistsError(f"dataset file '{path}' already exists")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write into directory '{directory}': no such directory")
    columns = [(key, getattr(dataset, key)) for key in _COLUMNS]
    columns += [(f"infos/{name}", values) for name, values in dataset.infos.items()]
    for key, values in columns:
        _check_chunk(key, values.shape[1:], chunk_rows)

    temp = f"{path}.tmp.{os.getpid()}.{next(_temp_counter)}.{secrets.token_hex(8)}"
    try:
        # the HDF5 1.10 file format, whose metadata has checksums
        with h5py.File(temp, "x", libver=("v110", "v110")) as f:
            for key, values in columns:
                # the filters in the C++ writer's order: Fletcher-32, then shuffle and gzip
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_fletcher32()
                if compression > 0:
                    dcpl.set_shuffle()
                    dcpl.set_deflate(compression)
                dtype = np.bool_ if values.dtype == np.bool_ else np.dtype("<f4")
                f.create_dataset(key, data=values, dtype=dtype, dcpl=dcpl,
                                 maxshape=(None,) + values.shape[1:],
                                 chunks=(chunk_rows,) + values.shape[1:])
            string = h5py.string_dtype("utf-8")
            f.attrs.create("env_spec", m.env_spec, dtype=string)
            f.attrs.create("collector", m.collector, dtype=string)
            f.attrs.create("prl_version", m.prl_version or __version__, dtype=string)
            f.attrs.create("format", FORMAT, dtype=string)
            f.attrs.create("seed", int(m.seed), dtype="<i8")
        _fsync(temp, os.O_RDONLY)
        try:
            os.link(temp, path)  # fails when path exists: never replaces a file
        except FileExistsError:
            raise FileExistsError(f"dataset file '{path}' already exists") from None
        except OSError:  # no hard links on this file system
            if os.path.lexists(path):
                raise FileExistsError(f"dataset file '{path}' already exists") from None
            os.rename(temp, path)
        _fsync(directory, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return path
