"""PriorClient: the models a prl_prior_server serves (proto/prior.proto's PriorService).

Thread-safe (one channel, immutable settings); close() it, or use it as a context manager.
"""

import os

from prl import v1
from prl._channel import DEFAULT_MAX_MESSAGE_BYTES, Connection
from prl.tensors import from_tensor, to_tensor


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty str, got {name!r}")
    return name


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be an int >= 0 (0: the newest), got {version!r}")
    return version


def _ref(model, version):
    return v1.PriorRef(name=_check_name(model), version=_check_version(version))


class PriorClient:
    """A client of one prior server.

    Args:
      address: HOST:PORT of prl_prior_server (the local cluster's default is 127.0.0.1:50053).
      token, tls, tls_server_name, timeout: as for prl.Client (a bearer token for LoadModel and
        UnloadModel when the server requires one; TLS; the default deadline in seconds).
    """

    def __init__(self, address="127.0.0.1:50053", *, token=None, tls=False,
                 tls_server_name=None, timeout=10.0,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
        self._conn = Connection(address, token=token, tls=tls, tls_server_name=tls_server_name,
                                timeout=timeout, max_message_bytes=max_message_bytes)
        self._stub = v1.PriorServiceStub(self._conn.channel)

    @property
    def address(self):
        return self._conn.address

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def health(self, timeout=None):
        """The server's health status, "SERVING" when it is ready."""
        return self._conn.health(timeout=timeout)

    def models(self, name=None, include_unloaded=True, timeout=None):
        """The models the server has loaded, and (include_unloaded) the artifacts in its model
        directory it could load; a list of prl.v1.ModelInfo sorted by name and version.
        `name` keeps only that model's versions."""
        request = v1.ListModelsRequest(name=_check_name(name) if name is not None else "",
                                       include_unloaded=bool(include_unloaded))
        response = self._conn.call("ListModels", self._stub.ListModels, request, timeout)
        return list(response.models)

    def load_model(self, name, source=None, *, version=0, server_path=None, batching=None,
                   timeout=None):
        """Serves a model under `name` and returns its prl.v1.ModelInfo.

        source: a path on this machine (str or os.PathLike) to a PRL artifact or a TorchScript
          module (.pt), whose bytes are sent; or those bytes. None: load `name` from the
          server's model directory (version 0: the newest there).
        version: with source or server_path, the version to register (0: one more than the
          newest known under name); without, the version to load.
        server_path: a path readable by the server instead of source.
        batching: a prl.v1.BatchingConfig or a dict of its fields; unset fields take the
          server's flags.
        Raises PrlError: ALREADY_EXISTS for the same name/version from a different artifact,
        DATA_LOSS or INVALID_ARGUMENT for an artifact the server cannot load, NOT_FOUND for a
        name its model directory lacks, UNAUTHENTICATED without the server's token.
        """
        request = v1.LoadModelRequest(name=_check_name(name), version=_check_version(version))
        if source is not None and server_path is not None:
            raise ValueError("give source (sent from here) or server_path (read by the server), "
                             "not both")
        if isinstance(source, (bytes, bytearray, memoryview)):
            request.artifact = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            try:
                with open(source, "rb") as f:
                    request.artifact = f.read()
            except OSError as e:
                raise ValueError(f"cannot read model file '{os.fspath(source)}': {e.strerror}") \
                    from None
        elif source is not None:
            raise TypeError("source must be a path, bytes or None, not "
                            f"{type(source).__name__}")
        if server_path is not None:
            request.artifact_path = os.fspath(server_path)
        if batching is not None:
            if isinstance(batching, dict):
                batching = v1.BatchingConfig(**batching)
            request.batching.CopyFrom(batching)
        return self._conn.call("LoadModel", self._stub.LoadModel, request, timeout).model

    def unload_model(self, name, version=0, timeout=None):
        """Stops serving one version of `name` (0: every loaded version); returns the
        prl.v1.PriorRef of each version unloaded. NOT_FOUND when nothing under name is loaded."""
        request = v1.UnloadModelRequest(name=_check_name(name), version=_check_version(version))
        response = self._conn.call("UnloadModel", self._stub.UnloadModel, request, timeout)
        return list(response.unloaded)

    def decode(self, model, z, state=None, *, version=0, timeout=None):
        """Decoded actions, float32 [B, H, A], for latents z [B, latent_dim] and (for decoders
        conditioned on it) states [B, obs_dim]."""
        request = v1.DecodeRequest(model=_ref(model, version), z=to_tensor(z, "float32"))
        if state is not None:
            request.state.CopyFrom(to_tensor(state, "float32"))
        return from_tensor(self._conn.call("Decode", self._stub.Decode, request, timeout).actions)

    def prior(self, model, state, *, version=0, timeout=None):
        """(mean, log_std), each float32 [B, latent_dim]: the model's p(z | s) for states
        [B, obs_dim]."""
        request = v1.PriorRequest(model=_ref(model, version), state=to_tensor(state, "float32"))
        response = self._conn.call("Prior", self._stub.Prior, request, timeout)
        return from_tensor(response.mean), from_tensor(response.log_std)

    def forward(self, model, z, state, *, version=0, timeout=None):
        """(actions [B, A], log_det [B]): a = f(z; s) through a flow."""
        request = v1.ForwardRequest(model=_ref(model, version), z=to_tensor(z, "float32"),
                                    state=to_tensor(state, "float32"))
        response = self._conn.call("Forward", self._stub.Forward, request, timeout)
        return from_tensor(response.actions), from_tensor(response.log_det)

    def inverse(self, model, actions, state, *, version=0, timeout=None):
        """(z [B, A], log_det [B]): z = f^-1(a; s) through a flow."""
        request = v1.InverseRequest(model=_ref(model, version),
                                    actions=to_tensor(actions, "float32"),
                                    state=to_tensor(state, "float32"))
        response = self._conn.call("Inverse", self._stub.Inverse, request, timeout)
        return from_tensor(response.z), from_tensor(response.log_det)
