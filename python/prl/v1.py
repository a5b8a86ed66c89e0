"""PRL's v1 API messages and enums (proto package prl.v1), e.g. prl.v1.ExperimentSpec,
prl.v1.EXPERIMENT_STATE_RUNNING, prl.v1.PriorRef.

The classes are protobuf's, generated from proto/*.proto when the package was built; see
proto/experiment.proto and proto/prior.proto for what every field means.
"""

try:
    from prl._proto import actor_pb2, experiment_pb2, prior_pb2, replay_pb2, tensor_pb2
    from prl._proto import experiment_pb2_grpc, prior_pb2_grpc
except ImportError as e:  # pragma: no cover - only a broken install gets here
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    _source = _os.path.exists(_os.path.join(_here, _os.pardir, "setup.py"))
    raise ImportError(
        "prl's gRPC stubs are missing or do not match the installed protobuf/grpcio "
        f"({e}). They are generated when the package is built: install it from a checkout "
        "with `pip install ./python` (scripts/setup.sh --client does it in .venv)"
        + (f". This prl is the source tree {_here}, which has no stubs: run from another "
           "directory (e.g. `pytest python/tests` from the repository root) so the installed "
           "package is imported, or install it editable (pip install -e ./python)"
           if _source else "") + ".") from e

_MODULES = (tensor_pb2, replay_pb2, prior_pb2, experiment_pb2, actor_pb2)


def _export():
    names = []
    for module in _MODULES:
        descriptor = module.DESCRIPTOR
        for name in descriptor.message_types_by_name:
            globals()[name] = getattr(module, name)
            names.append(name)
        for name, enum in descriptor.enum_types_by_name.items():
            globals()[name] = getattr(module, name)
            names.append(name)
            for value in enum.values:
                globals()[value.name] = value.number
                names.append(value.name)
    return names


__all__ = _export()

# the service stubs, for calls the client does not wrap
ExperimentServiceStub = experiment_pb2_grpc.ExperimentServiceStub
PriorServiceStub = prior_pb2_grpc.PriorServiceStub
