"""The exceptions the client raises.

Every failed call raises PrlError carrying the gRPC status code and the server's message, which
names the field, the value and what is allowed (PRL validates every request). Problems found
before anything is sent (a spec file that does not parse, an argument of the wrong type) raise
SpecError or the usual TypeError/ValueError.
"""

import grpc


class PrlError(Exception):
    """A PRL call failed.

    Attributes:
      code: the grpc.StatusCode, e.g. grpc.StatusCode.INVALID_ARGUMENT.
      details: the server's message (or the client's, for local problems).
      method: what was called, e.g. "Submit".
      target: the server's address, or "" for problems found before any call.
    """

    def __init__(self, code, details, method="", target=""):
        self.code = code
        self.details = details
        self.method = method
        self.target = target
        super().__init__(str(self))

    @property
    def code_name(self):
        """The status code's name, e.g. "INVALID_ARGUMENT"."""
        return self.code.name

    def __str__(self):
        where = self.method
        if self.target:
            where = f"{where} on {self.target}" if where else self.target
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.code.name}: {self.details}"

    def __reduce__(self):  # picklable (multiprocessing), whatever a subclass's __init__ takes
        return (_rebuild, (type(self), self.code, self.details, self.method, self.target))

    @classmethod
    def from_rpc_error(cls, error, method, target):
        """The PrlError for a grpc.RpcError raised by a call."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", method, target)


def _rebuild(cls, code, details, method, target):
    error = cls.__new__(cls)
    PrlError.__init__(error, code, details, method, target)
    return error


class SpecError(PrlError, ValueError):
    """An experiment spec could not be read or parsed locally (INVALID_ARGUMENT, or NOT_FOUND
    for a missing file). Also a ValueError."""

    def __init__(self, details, code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(code, details, "submit")


class DatasetError(ValueError):
    """A dataset file or array is malformed; the message names the file and the key."""
