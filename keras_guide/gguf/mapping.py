"""Tensors as Keras weights and back: flat lists of (Keras path, GGUF name,
layout, Keras shape).

An architecture module states its mapping once, as data, like KerasHub's
converters: the weights outside the blocks, and one block's weights with the
block index left out, each with its Keras variable's shape. Each entry's
`Layout` converts a tensor both ways, so the importer (`weights`), the
exporter (`tensors`) and the shapes a file must hold (`file_shapes`) cannot
disagree on a layout fact; `tests/gguf/` checks that every pair of
conversions is an exact inverse.
"""

import collections

import numpy as np

# `to_keras(value)`: a tensor as the file stores it (NumPy row-major, the
# PyTorch layout) → the Keras weight; `to_gguf(value)` the other way.
# `elementwise`: both keep the shape (they change values only).
Layout = collections.namedtuple(
    "Layout", ["to_keras", "to_gguf", "elementwise"], defaults=(False,)
)


def _identity(value):
    return value


def _transpose(value):
    return value.T


# A vector (norm gain) or a table stored as is.
same = Layout(_identity, _identity, elementwise=True)
# `(out, in)` as GGUF stores a linear weight ↔ a Keras `(in, out)` kernel.
transpose = Layout(_transpose, _transpose)


def elementwise(to_keras, to_gguf):
    """A layout that changes values only, elementwise (`to_keras`, `to_gguf`)."""
    return Layout(to_keras, to_gguf, elementwise=True)


def shift(offset):
    """A weight the file stores plus `offset` (Gemma's norm gains: `1 + scale`)."""
    return elementwise(lambda w: w - offset, lambda w: w + offset)


def _entries(top, block, num_layers, keras_block, gguf_block):
    yield from top
    for index in range(num_layers):
        k, g = keras_block.format(index), gguf_block.format(index)
        for path, name, layout, shape in block:
            yield k + path, g + name, layout, shape


def file_shape(layout, shape):
    """The shape a Keras weight of `shape` has in the file, after `layout`.

    The layout's own reshapes and transposes run on a stand-in of that shape:
    a zero-stride view of one float, which costs no memory however large the
    shape a file's metadata declares.
    """
    if layout.elementwise:
        return tuple(shape)
    stand_in = np.broadcast_to(np.float32(0), shape)
    return tuple(int(n) for n in layout.to_gguf(stand_in).shape)


def file_shapes(top, block, num_layers, keras_block, gguf_block="blk.{}."):
    """`{gguf name: shape}` of every tensor a file of this mapping holds.

    Args:
        top, block, num_layers, keras_block, gguf_block: as for `weights`.
    """
    return {
        name: file_shape(layout, shape)
        for _, name, layout, shape in _entries(
            top, block, num_layers, keras_block, gguf_block
        )
    }


def weights(f, top, block, num_layers, keras_block, gguf_block="blk.{}."):
    """Yields `(keras path, gguf name, value)` for `top`, then `block` per block.

    Each tensor is read from the file only when its turn comes.

    Args:
        f: a `GGUFFile`.
        top: `(keras path, gguf name, layout, keras shape)` outside the blocks.
        block: the same for one block, paths relative to the block prefixes.
        num_layers: how many blocks.
        keras_block, gguf_block: the block prefixes, formatted with the index.
    """
    entries = _entries(top, block, num_layers, keras_block, gguf_block)
    for path, name, layout, _ in entries:
        yield path, name, layout.to_keras(f.tensor(name))


def tensors(read, top, block, num_layers, keras_block, gguf_block="blk.{}."):
    """Yields `(gguf name, float32 array, keras path)` from Keras weights.

    Args:
        read: `read(keras path)` → the weight's value as a NumPy array.
        top, block, num_layers, keras_block, gguf_block: as for `weights`.
    """
    entries = _entries(top, block, num_layers, keras_block, gguf_block)
    for path, name, layout, _ in entries:
        value = layout.to_gguf(np.asarray(read(path), dtype=np.float32))
        yield name, np.ascontiguousarray(value), path
