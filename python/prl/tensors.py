"""numpy arrays to and from prl.v1.Tensor (proto/tensor.proto: dtype, shape, raw little-endian
row-major bytes)."""

import numpy as np

from prl import v1

_TO_PROTO = {
    np.dtype(np.float32): v1.Tensor.DTYPE_FLOAT32,
    np.dtype(np.int64): v1.Tensor.DTYPE_INT64,
    np.dtype(np.uint8): v1.Tensor.DTYPE_UINT8,
}
_FROM_PROTO = {
    v1.Tensor.DTYPE_FLOAT32: np.dtype("<f4"),
    v1.Tensor.DTYPE_INT64: np.dtype("<i8"),
    v1.Tensor.DTYPE_UINT8: np.dtype("u1"),
}


def to_tensor(array, dtype=None):
    """A Tensor holding `array` (anything np.asarray takes). `dtype` (float32, int64 or uint8)
    converts first; without it the array's dtype must be one of those (float64 arrays are
    converted to float32, Python ints to int64)."""
    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype.kind == "i" and array.dtype != np.int64:
        array = array.astype(np.int64)
    native = array.dtype.newbyteorder("=")
    if native not in _TO_PROTO:
        raise TypeError(f"tensors hold float32, int64 or uint8, not {array.dtype}")
    little = np.ascontiguousarray(array, dtype=native.newbyteorder("<"))
    return v1.Tensor(dtype=_TO_PROTO[native], shape=list(array.shape), data=little.tobytes())


def from_tensor(tensor):
    """The numpy array (native byte order, a copy) a Tensor holds. Raises ValueError when its
    dtype is unset or its data does not match its shape."""
    if tensor.dtype not in _FROM_PROTO:
        raise ValueError(f"tensor has dtype {tensor.dtype} (DTYPE_UNSPECIFIED or unknown)")
    dtype = _FROM_PROTO[tensor.dtype]
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor has a negative dimension in shape {list(shape)}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise ValueError(f"tensor of shape {list(shape)} and {dtype} needs {expected} bytes, "
                         f"has {len(tensor.data)}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
