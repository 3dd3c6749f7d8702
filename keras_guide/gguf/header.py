"""A GGUF file's header, parsed: metadata and the tensor directory.

GGUF is llama.cpp's checkpoint format: a header of typed key/value metadata
(architecture, sizes, tokenizer), then tensors, each in its own quantization
type. The header is parsed here, bounded by the file itself: every count is
checked against the bytes left before anything is allocated for it, arrays
are kept as offsets into the file and decoded when a key is read (a file
cannot make the reader hold much more than its own size), and the tensors
must lie in the data section as llama.cpp requires: aligned, in order,
neither overlapping nor aliasing each other. `reader.GGUFFile` reads values
and tensors through it.
"""

import dataclasses
import math
import mmap
import struct

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


# GGUF's value types (gguf.GGUFValueType) by number: NumPy dtypes of the
# fixed-size ones; 8 is a string (a u64 length, then UTF-8 bytes), 9 an
# array (an item type, a u64 count, the items).
_FIXED = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_STRING, _ARRAY = 8, 9
_VERSIONS = (2, 3)
# llama.cpp's limits (ggml.h): at most 4 dimensions.
_MAX_DIMS = 4
_DEFAULT_ALIGNMENT = 32
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
# After this many equal string lengths in a row, the rest of the run is
# checked at once (a vocabulary rarely repeats a length; a hostile array of
# millions of empty strings does, and is then walked in ~0.1 s, not ~1 s).
_RUN = 32
_RUN_CHUNK = 1 << 16


@dataclasses.dataclass
class _Array:
    """A metadata array left in the file: decoded when its key is read."""

    item_type: int
    count: int
    offset: int
    end: int

    def decode(self, path):
        with open(path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.end - self.offset)
        if self.item_type in _FIXED:
            return np.frombuffer(data, _FIXED[self.item_type], self.count).tolist()
        out, pos, unpack = [], 0, _U64.unpack_from
        for _ in range(self.count):
            (length,) = unpack(data, pos)
            out.append(data[pos + 8 : pos + 8 + length].decode("utf-8", "replace"))
            pos += 8 + length
        return out


@dataclasses.dataclass
class _TensorInfo:
    """Where a tensor lies in the file, and how its bytes read as an array.

    `offset` is relative to the data section; `_place_tensors` sets the
    absolute `data_offset` and the size `n_bytes` once the section is known.
    """

    name: str
    tensor_type: object  # a `gguf.GGMLQuantizationType`
    dims: tuple
    offset: int
    data_offset: int | None = None
    n_bytes: int | None = None

    @property
    def shape(self):
        """Row-major (NumPy) order: GGUF lists dimensions fastest-first."""
        return tuple(reversed(self.dims))


class _Header:
    """Parses a GGUF header from a read-only memory map of the file, each
    read checked against the file's length."""

    def __init__(self, path, buf, size):
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def fail(self, what):
        raise GGUFError(f"`{self.path}` is truncated or corrupted: {what}.")

    def take(self, count, what):
        start = self.pos
        if count < 0 or start + count > self.size:
            self.fail(
                f"{what} at byte {start} needs {count} bytes, but the file "
                f"has {self.size}"
            )
        self.pos = start + count
        return start

    def u32(self, what):
        return _U32.unpack_from(self.buf, self.take(4, what))[0]

    def u64(self, what):
        return _U64.unpack_from(self.buf, self.take(8, what))[0]

    def string(self, what):
        length = self.u64(what)
        start = self.take(length, what)
        return self.buf[start : start + length].decode("utf-8", "replace")

    def count(self, what, item_bytes):
        """A u64 count of items of at least `item_bytes` bytes each, refused
        when the rest of the file cannot hold them."""
        count = self.u64(what)
        if count * item_bytes > self.size - self.pos:
            self.fail(
                f"{what} declares {count:,} items of at least {item_bytes} "
                f"bytes at byte {self.pos}, more than the "
                f"{self.size - self.pos:,} bytes left in the file"
            )
        return count

    def value(self, value_type, key):
        if value_type in _FIXED:
            start = self.take(np.dtype(_FIXED[value_type]).itemsize, f"`{key}`")
            return np.frombuffer(self.buf, _FIXED[value_type], 1, start).item()
        if value_type == _STRING:
            return self.string(f"`{key}`")
        if value_type != _ARRAY:
            self.fail(f"metadata `{key}` has unknown value type {value_type}")
        item_type = self.u32(f"`{key}`'s item type")
        if item_type == _ARRAY:
            self.fail(
                f"metadata `{key}` is an array of arrays, which GGUF "
                "readers (llama.cpp's too) do not take"
            )
        if item_type not in _FIXED and item_type != _STRING:
            self.fail(f"metadata `{key}` has unknown item type {item_type}")
        item_bytes = (
            np.dtype(_FIXED[item_type]).itemsize if (item_type in _FIXED) else 8
        )
        count = self.count(f"metadata array `{key}`", item_bytes)
        start = self.pos
        if item_type in _FIXED:
            self.take(count * item_bytes, f"`{key}`")
        else:
            self.skip_strings(count, key)
        return _Array(item_type, count, start, self.pos)

    def skip_strings(self, count, key):
        """Walks past `count` strings, each length checked against the file."""
        buf, size, unpack = self.buf, self.size, _U64.unpack_from
        pos, done, last, run = self.pos, 0, -1, 0
        while done < count:
            if pos + 8 > size:
                self.pos = pos
                self.take(8, f"item {done} of `{key}`")
            (length,) = unpack(buf, pos)
            pos += 8 + length
            if pos > size:
                self.fail(
                    f"item {done} of `{key}` declares {length:,} bytes, past "
                    f"the end of the file ({size:,} bytes)"
                )
            done += 1
            run = run + 1 if length == last else 0
            last = length
            if run >= _RUN and done < count:
                skipped = self._equal_lengths(pos, length, count - done)
                done += skipped
                pos += skipped * (8 + length)
                run = 0
        self.pos = pos

    def _equal_lengths(self, pos, length, most):
        """How many strings from `pos` on, at most `most`, are `length` long."""
        step = 8 + length
        most = min(most, (self.size - pos) // step)
        found = 0
        while found < most:
            chunk = min(_RUN_CHUNK, most - found)
            view = np.ndarray((chunk,), "<u8", self.buf, pos + found * step, (step,))
            differ = np.flatnonzero(view != length)
            del view  # the map is closed after parsing: no view may outlive it
            if len(differ):
                return found + int(differ[0])
            found += chunk
        return found


def _read_metadata(header, gguf, num_keys):
    """`(metadata, value types)`: `{key: value}` (arrays as `_Array`) and
    `{key: (GGUFValueType,) or (ARRAY, item type)}`."""
    metadata, types = {}, {}
    for _ in range(num_keys):
        key = header.string("a metadata key")
        if key in metadata:
            header.fail(f"metadata key `{key}` appears twice")
        value_type = header.u32(f"`{key}`'s type")
        value = header.value(value_type, key)
        metadata[key] = value
        types[key] = (gguf.GGUFValueType(value_type),) + (
            (gguf.GGUFValueType(value.item_type),) if isinstance(value, _Array) else ()
        )
    return metadata, types


def _read_tensor_infos(header, gguf, num_tensors):
    """`{name: _TensorInfo}` in the file's order, each type one `gguf` knows."""
    tensors = {}
    for _ in range(num_tensors):
        name = header.string("a tensor name")
        if name in tensors:
            header.fail(f"tensor `{name}` appears twice")
        n_dims = header.u32(f"tensor `{name}`'s rank")
        if n_dims > _MAX_DIMS:
            header.fail(
                f"tensor `{name}` has {n_dims} dimensions; GGUF "
                f"tensors have at most {_MAX_DIMS}"
            )
        dims = tuple(header.u64(f"tensor `{name}`'s shape") for _ in range(n_dims))
        raw_type = header.u32(f"tensor `{name}`'s type")
        try:
            kind = gguf.GGMLQuantizationType(raw_type)
            gguf.GGML_QUANT_SIZES[kind]
        except (ValueError, KeyError):
            header.fail(f"tensor `{name}` has unknown type {raw_type}")
        tensors[name] = _TensorInfo(
            name, kind, dims, header.u64(f"tensor `{name}`'s offset")
        )
    return tensors


def _alignment(path, gguf, metadata, types):
    """`general.alignment` (a uint32 power of two), or GGUF's default 32."""
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and (
        types["general.alignment"] != (gguf.GGUFValueType.UINT32,)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise GGUFError(
            f"`{path}`: metadata `general.alignment` must be a uint32 "
            f"power of two. Received: {alignment!r}"
        )
    return alignment


def parse(path, size):
    """`(version, metadata, value types, tensors)` of the GGUF file at `path`.

    Args:
        path: str. The file (its first 4 bytes already checked to be `GGUF`).
        size: int. Its length in bytes.

    Returns:
        The format version; `{key: value}` (arrays as `_Array`, decoded on
        demand); `{key: (GGUFValueType,) or (ARRAY, item type)}`; and
        `{name: _TensorInfo}` with each tensor placed in the data section.

    Raises:
        GGUFError: the header is truncated or corrupted (naming what).
    """
    gguf = _gguf()
    with (
        open(path, "rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf,
    ):
        header = _Header(path, buf, size)
        header.take(4, "the magic")
        version = header.u32("the version")
        if version not in _VERSIONS:
            header.fail(
                f"GGUF version {version} (supported: {_VERSIONS}; a "
                "byte-swapped version is a big-endian file)"
            )
        # A tensor's info takes at least 32 bytes, a key/value at least 13.
        num_tensors = header.count("the tensor count", 32)
        num_keys = header.count("the metadata count", 13)
        metadata, types = _read_metadata(header, gguf, num_keys)
        tensors = _read_tensor_infos(header, gguf, num_tensors)
        data_start = header.pos
    alignment = _alignment(path, gguf, metadata, types)
    data_start += -data_start % alignment
    _place_tensors(path, gguf, tensors.values(), data_start, size, alignment)
    return version, metadata, types, tensors


def _place_tensors(path, gguf, tensors, data_start, size, alignment):
    """Checks each tensor's bytes as llama.cpp does: whole blocks per row,
    offsets aligned and in order, no tensor overlapping (or aliasing) the one
    before, every one inside the data section; sets `data_offset`."""
    end = 0
    for tensor in tensors:
        block, block_bytes = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        kind = tensor.tensor_type.name
        row = tensor.dims[0] if tensor.dims else 1
        if row % block:
            raise GGUFError(
                f"`{path}`: tensor `{tensor.name}` of type {kind} has rows of "
                f"{row} values, not whole blocks of {block}."
            )
        n_bytes = math.prod(tensor.dims) // block * block_bytes
        if tensor.offset % alignment or tensor.offset < end:
            reason = (
                f"is not a multiple of the alignment {alignment}"
                if tensor.offset % alignment
                else f"lies inside the tensor before it, which ends at {end}"
            )
            raise GGUFError(
                f"`{path}` is corrupted: tensor `{tensor.name}`'s data offset "
                f"{tensor.offset} {reason}. llama.cpp refuses such a file: each "
                "tensor's data follows the one before, aligned, never shared."
            )
        end = tensor.offset + n_bytes
        if data_start + end > size:
            raise GGUFError(
                f"`{path}` is truncated: tensor `{tensor.name}` ends at byte "
                f"{data_start + end} but the file has {size} bytes."
            )
        tensor.n_bytes = n_bytes
        tensor.data_offset = data_start + tensor.offset
