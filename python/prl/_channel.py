"""One gRPC connection to a PRL server: the channel (plaintext or TLS), the bearer token sent
with every call, the default deadline, and the conversion of failed calls to PrlError.

Thread-safe: grpc channels and stubs may be shared by threads; the rest is immutable.
"""

import math
import os

import grpc

from prl.errors import PrlError

# PRL servers accept messages up to --max_message_bytes (64 MiB by default).
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20


def check_timeout(timeout, what="timeout"):
    """`timeout` as float seconds; ValueError unless it is a finite number > 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {timeout}")
    return float(timeout)


def _root_certificates(tls):
    """PEM roots for `tls`: None (the system's) for True, a file's bytes for a path, or the
    bytes given."""
    if tls is True:
        return None
    if isinstance(tls, (bytes, bytearray)):
        return bytes(tls)
    if isinstance(tls, (str, os.PathLike)):
        try:
            with open(tls, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"tls: cannot read the CA certificates file '{os.fspath(tls)}': "
                             f"{e.strerror}") from None
    raise TypeError("tls must be False, True (the system's roots), a path to PEM CA "
                    f"certificates or their bytes, not {type(tls).__name__}")


class Connection:
    """A channel to one server with its token and default deadline.

    Args:
      address: HOST:PORT of the server.
      token: bearer token sent as "authorization: Bearer <token>" metadata on every call
        (servers started with --auth_token_file or $PRL_AUTH_TOKEN require it on mutating
        calls). None: $PRL_AUTH_TOKEN when set, as prlctl does; "": no token.
      tls: False for plaintext; True to verify the server with the system's roots; a path to
        PEM CA certificates, or their bytes.
      tls_server_name: the name to expect in the server's certificate when it differs from
        the address's host.
      timeout: default deadline of every call, in seconds.
    """

    def __init__(self, address, *, token=None, tls=False, tls_server_name=None, timeout=10.0,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"address must be a non-empty 'HOST:PORT' string, got {address!r}")
        self.address = address.strip()
        self.timeout = check_timeout(timeout)
        if token is None:
            token = os.environ.get("PRL_AUTH_TOKEN", "")
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, not {type(token).__name__}")
        token = token.strip()
        if any(c in token for c in "\r\n\0"):
            raise ValueError("token must be one line (no CR, LF or NUL)")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", int(max_message_bytes)),
                   ("grpc.max_send_message_length", int(max_message_bytes))]
        if tls is False or tls is None:
            self.channel = grpc.insecure_channel(self.address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=_root_certificates(tls))
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(self.address, credentials, options=options)

    def deadline(self, timeout):
        """The per-call timeout: `timeout` when given, the default otherwise."""
        return self.timeout if timeout is None else check_timeout(timeout)

    def call(self, method, rpc, request, timeout=None):
        """Runs unary `rpc` (a stub's method) with the token and deadline; raises PrlError
        naming `method` on failure."""
        try:
            return rpc(request, timeout=self.deadline(timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise PrlError.from_rpc_error(e, method, self.address) from None

    def stream(self, rpc, request, timeout):
        """Starts server-streaming `rpc`; the caller iterates and cancels it."""
        return rpc(request, timeout=check_timeout(timeout), metadata=self._metadata)

    def health(self, service="", timeout=None):
        """The server's grpc.health.v1 status for `service` ("" for the whole server):
        "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN". Raises PrlError when the call
        fails (e.g. UNAVAILABLE when nothing listens)."""
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=_health_request,
            response_deserializer=_health_status)
        return self.call("Health.Check", check, service, timeout)

    def close(self):
        self.channel.close()


# grpc.health.v1 by hand (see SKIPPED_PROTOS in setup.py): HealthCheckRequest is one string
# field, HealthCheckResponse one enum field, both numbered 1.
_HEALTH_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _health_request(service):
    data = service.encode("utf-8")
    return b"\x0a" + _varint(len(data)) + data if data else b""


def _read_varint(data, i):
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _health_status(data):
    status, i = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(data, i)
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return _HEALTH_NAMES.get(status, str(status))
