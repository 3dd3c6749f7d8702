"""Reading a GGUF file: metadata, and tensors dequantized to float32 NumPy arrays.

`GGUFFile` opens a llama.cpp checkpoint through its parsed header
(`header.py`: every count and offset checked against the file) and reads
metadata values and tensors on demand. The `gguf` package (llama.cpp's own
Python code, NumPy only) dequantizes every block format. Errors name the
file, the key or tensor and what is supported; tensors come in NumPy's
row-major layout (GGUF lists dimensions fastest-first, so a Linear weight
stored as `[in, out]` reads as an `(out, in)` array, the PyTorch layout).
"""

import math
import os

import numpy as np

from keras_guide.gguf.header import GGUFError
from keras_guide.gguf.header import _Array
from keras_guide.gguf.header import _gguf
from keras_guide.gguf.header import parse

# Dequantizing unquantized types is a cast from these NumPy types.
_PLAIN = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
}
# Rows dequantized at a time: the block decoders make several float32 copies of
# their input, so a whole 49,152 x 576 table would briefly cost ~3x its size.
_CHUNK_BYTES = 16 * 2**20


def _dequantize_rows(gguf, data, kind):
    """`gguf.quants.dequantize` over blocks of rows, into one float32 array."""
    rows = data.reshape(-1, data.shape[-1])
    chunk = max(1, _CHUNK_BYTES // max(1, rows.shape[1] * 4))
    first = gguf.quants.dequantize(rows[:chunk], kind)
    out = np.empty((rows.shape[0], first.shape[-1]), np.float32)
    out[: len(first)] = first
    for start in range(chunk, rows.shape[0], chunk):
        out[start : start + chunk] = gguf.quants.dequantize(
            rows[start : start + chunk], kind
        )
    return out


class GGUFFile:
    """A GGUF file opened for import (header parsed; tensors read on demand).

    Args:
        path: the `.gguf` file (a `str` or `os.PathLike`).

    Raises:
        GGUFError: `path` is not a path, the file does not exist, is not
            GGUF, or is truncated or corrupted: counts or lengths the file
            cannot hold, tensors out of order, overlapping, unaligned or past
            its end (the message names the file and what was found).
    """

    def __init__(self, path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise GGUFError(
                "`path` must be the path of a `.gguf` file (a str or os.PathLike). "
                f"Received: path={path!r} of type {type(path).__name__}"
            )
        self.path = os.fsdecode(path)
        if not os.path.isfile(self.path):
            raise GGUFError(f"No GGUF file at `{self.path}`.")
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise GGUFError(
                f"`{self.path}` is not a GGUF file: it starts with {magic!r}, "
                "a GGUF file with b'GGUF'. Pass a llama.cpp `.gguf` checkpoint."
            )
        size = os.path.getsize(self.path)
        self.version, self._metadata, self._value_types, self._tensors = parse(
            self.path, size
        )

    @property
    def architecture(self):
        return self.get("general.architecture")

    def get(self, key, default=None):
        """The metadata value under `key`, or `default` when it is absent."""
        value = self._metadata.get(key, default)
        if isinstance(value, _Array):
            value = self._metadata[key] = value.decode(self.path)
        return value

    def length(self, key):
        """The number of items of the metadata array `key` (without reading
        them), or `None` when `key` is absent or not an array."""
        value = self._metadata.get(key)
        if isinstance(value, _Array):
            return value.count
        return len(value) if isinstance(value, list) else None

    def keys(self):
        """The metadata keys, in the file's order."""
        return list(self._metadata)

    def value_types(self, key):
        """Key `key`'s `GGUFValueType`s: `(type,)`, or `(ARRAY, item type)`."""
        return self._value_types[key]

    def positive(self, key, default=None, kind=int, limits=None):
        """A metadata size or constant that must be a positive `kind`
        (`int`: whole; `float`: finite), within `limits` (`(low, high)`,
        each inclusive) where given; a `GGUFError` naming it otherwise."""
        value = self.get(key, default) if default is not None else self.require(key)
        number = value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and kind is int:
            ok = float(value).is_integer()
            number = int(value) if ok else value
        if ok:
            ok = math.isfinite(number) and number > 0
        if not ok:
            raise GGUFError(
                f"`{self.path}`: metadata `{key}` must be a positive "
                f"{'whole number' if kind is int else 'finite number'}. Received: "
                f"{value!r}. The file is corrupted or not a llama.cpp checkpoint."
            )
        if limits is not None and not limits[0] <= number <= limits[1]:
            raise GGUFError(
                f"`{self.path}`: metadata `{key}` must lie in [{limits[0]:g}, "
                f"{limits[1]:g}] (what checkpoints use; outside it the model's "
                f"numbers are meaningless). Received: {value!r}. The file is "
                "corrupted or not a llama.cpp checkpoint."
            )
        return kind(number)

    def check_shapes(self, expected):
        """Compares each tensor's shape with `{name: shape}` the metadata
        implies, before any memory is allocated for a model.

        Raises:
            GGUFError: a missing tensor or another shape, naming both.
        """
        for name, shape in expected.items():
            found = self.tensor_shape(name)
            if found != tuple(shape):
                raise GGUFError(
                    f"`{self.path}`: tensor `{name}` has shape {found}, but the "
                    f"metadata describes {tuple(shape)}. The file is corrupted or "
                    "its metadata does not match its tensors."
                )

    def require(self, key):
        """The metadata value under `key`; a `GGUFError` naming it when absent."""
        if key not in self._metadata:
            raise GGUFError(
                f"`{self.path}` has no metadata key `{key}`, which a "
                f"{self.architecture!r} checkpoint needs."
            )
        return self.get(key)

    def has_tensor(self, name):
        return name in self._tensors

    @property
    def tensor_names(self):
        return list(self._tensors)

    def tensor_type(self, name):
        return self._tensors[name].tensor_type.name

    def tensor_shape(self, name):
        """Tensor `name`'s shape in row-major order (without reading it)."""
        if name not in self._tensors:
            raise GGUFError(
                f"`{self.path}` ({self.architecture}) has no tensor `{name}`."
            )
        return tuple(int(n) for n in self._tensors[name].shape)

    def tensor(self, name):
        """Tensor `name` dequantized to a float32 array in row-major layout.

        Raises:
            GGUFError: the tensor is missing, or its quantization type cannot
                be dequantized by the installed `gguf` package.
        """
        gguf = _gguf()
        tensor = self._tensors.get(name)
        if tensor is None:
            raise GGUFError(
                f"`{self.path}` ({self.architecture}) has no tensor `{name}`."
            )
        kind = tensor.tensor_type
        shape = self.tensor_shape(name)
        # A plain file read rather than a memory map, whose touched pages
        # would stay in the process's memory.
        data = np.fromfile(
            self.path, dtype=np.uint8, count=tensor.n_bytes, offset=tensor.data_offset
        )
        try:
            if kind.name in _PLAIN:
                values = data.view(_PLAIN[kind.name]).astype(np.float32)
            else:
                rows = data.reshape(*shape[:-1], -1) if shape else data
                values = _dequantize_rows(gguf, rows, kind)
        except (NotImplementedError, KeyError, ValueError) as error:
            raise GGUFError(
                f"Tensor `{name}` of `{self.path}` is stored as {kind.name}, which "
                f"the installed gguf package cannot dequantize ({error}). "
                "Convert the file to another type (e.g. Q8_0 or F16) with "
                "llama.cpp's llama-quantize."
            ) from error
        values = np.asarray(values, dtype=np.float32).reshape(shape)
        if not np.all(np.isfinite(values)):
            raise GGUFError(
                f"Tensor `{name}` of `{self.path}` holds NaN or Inf after "
                "dequantization: the file is corrupted."
            )
        return values
