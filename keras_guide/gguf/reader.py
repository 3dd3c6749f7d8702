"""Reading a GGUF file: metadata, and tensors dequantized to float32 NumPy arrays.

GGUF is llama.cpp's checkpoint format: a header of typed key/value metadata
(architecture, sizes, tokenizer), then tensors, each in its own quantization
type. The `gguf` package (llama.cpp's own reader, NumPy only) parses the file
and dequantizes every block format; this module adds what a user needs around
it: errors that name the file, the tensor and what is supported, and tensors
in NumPy's row-major layout (GGUF lists dimensions fastest-first, so a Linear
weight stored as `[in, out]` reads as an `(out, in)` array, the PyTorch layout).
"""

import math
import os

import numpy as np

_GGUF_INSTALL = (
    "Reading GGUF files needs the `gguf` package: pip install 'keras-guide[gguf]' "
    "(or pip install gguf)."
)


class GGUFError(ValueError):
    """A GGUF file that keras_guide cannot import; the message says why."""


def _gguf():
    try:
        import gguf
    except ImportError as error:
        raise ImportError(_GGUF_INSTALL) from error
    return gguf


def _field_value(field):
    """A metadata field as a Python value (str, int, float, bool or list)."""
    gguf = _gguf()
    value_type = field.types[0]
    if value_type == gguf.GGUFValueType.ARRAY:
        item_type = field.types[-1]
        if item_type == gguf.GGUFValueType.STRING:
            return [
                bytes(field.parts[i]).decode("utf-8", errors="replace")
                for i in field.data
            ]
        return [field.parts[i].tolist()[0] for i in field.data]
    if value_type == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    return field.parts[field.data[0]].tolist()[0]


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
    """A GGUF file opened for import (memory-mapped; tensors read on demand).

    Args:
        path: the `.gguf` file.

    Raises:
        GGUFError: the file does not exist, is not GGUF, or is truncated or
            corrupted (its message names the file and what was found).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise GGUFError(f"No GGUF file at `{self.path}`.")
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise GGUFError(
                f"`{self.path}` is not a GGUF file: it starts with {magic!r}, "
                "a GGUF file with b'GGUF'. Pass a llama.cpp `.gguf` checkpoint."
            )
        gguf = _gguf()
        try:
            self._reader = gguf.GGUFReader(self.path)
        except Exception as error:  # The reader raises many types on bad bytes.
            raise GGUFError(
                f"`{self.path}` could not be read as GGUF (truncated or "
                f"corrupted?): {type(error).__name__}: {error}"
            ) from error
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._check_complete()
        # Metadata as plain Python values; the reader's per-item NumPy views of
        # it (a vocabulary is ~10^5 of them, ~150 MiB) are released.
        self._metadata = {
            key: _field_value(field) for key, field in self._reader.fields.items()
        }
        # Each key's GGUF value type (and item type for arrays), to copy a
        # key verbatim into another file.
        self._value_types = {
            key: tuple(field.types) for key, field in self._reader.fields.items()
        }
        self._reader.fields.clear()

    def _check_complete(self):
        size = os.path.getsize(self.path)
        for tensor in self._reader.tensors:
            end = int(tensor.data_offset) + int(tensor.n_bytes)
            if end > size or tensor.data.nbytes != int(tensor.n_bytes):
                raise GGUFError(
                    f"`{self.path}` is truncated: tensor `{tensor.name}` ends at "
                    f"byte {end} but the file has {size} bytes."
                )

    @property
    def architecture(self):
        return self.get("general.architecture")

    def get(self, key, default=None):
        """The metadata value under `key`, or `default` when it is absent."""
        return self._metadata.get(key, default)

    def keys(self):
        """The metadata keys, in the file's order."""
        return list(self._metadata)

    def value_types(self, key):
        """Key `key`'s `GGUFValueType`s: `(type,)`, or `(ARRAY, item type)`."""
        return self._value_types[key]

    def positive(self, key, default=None, kind=int):
        """A metadata size or constant that must be a positive `kind`
        (`int`: whole; `float`: finite); a `GGUFError` naming it otherwise."""
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
        return self._metadata[key]

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
        return tuple(int(n) for n in reversed(self._tensors[name].shape.tolist()))

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
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        # Read with a plain file read rather than through the reader's memory
        # map, whose touched pages would stay in the process's memory.
        data = (
            np.fromfile(
                self.path,
                dtype=np.uint8,
                count=int(tensor.n_bytes),
                offset=int(tensor.data_offset),
            )
            .view(tensor.data.dtype)
            .reshape(tensor.data.shape)
        )
        try:
            if kind in (
                gguf.GGMLQuantizationType.F32,
                gguf.GGMLQuantizationType.F64,
                gguf.GGMLQuantizationType.F16,
            ):
                values = np.asarray(data, dtype=np.float32)
            else:
                values = _dequantize_rows(gguf, data, kind)
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
