"""The Python client of PRL.

    import prl
    client = prl.Client("127.0.0.1:50052", prior_address="127.0.0.1:50053")
    exp = client.submit("examples/cheetah_sac.textproto")
    for snapshot in client.watch(exp, progress=True):
        pass
    client.curve(exp)                     # a pandas DataFrame
    client.plot([exp], "curve.png")       # mean ± std per group, as prlctl plot

Experiments: Client (ExperimentService on prl_learner). Priors: PriorClient, or Client's
models/load_model/unload_model with prior_address. Messages: prl.v1. Errors: PrlError (with
the gRPC status code), SpecError. Datasets: Dataset, read_dataset, write_dataset (PRL's
D4RL-layout HDF5), to_minari, from_minari. See docs/python.md.
"""

from prl._version import __version__
from prl import v1
from prl.client import TERMINAL_STATES, Client, state_name
from prl.curves import curve_frame, plot_curves
from prl.datasets import (FORMAT, Dataset, DatasetMetadata, derive_next_observations,
                          read_dataset, write_dataset)
from prl.errors import DatasetError, PrlError, SpecError
from prl.minari_io import from_minari, to_minari
from prl.prior import PriorClient
from prl.specs import parse_spec_text as parse_spec
from prl.specs import read_spec_file, to_spec
from prl.tensors import from_tensor, to_tensor

__all__ = [
    "Client", "PriorClient", "PrlError", "SpecError", "DatasetError", "v1", "TERMINAL_STATES",
    "state_name", "curve_frame", "plot_curves", "Dataset", "DatasetMetadata", "FORMAT",
    "read_dataset", "write_dataset", "derive_next_observations", "to_minari", "from_minari",
    "parse_spec", "read_spec_file", "to_spec", "to_tensor", "from_tensor", "__version__",
]
