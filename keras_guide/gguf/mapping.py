"""Tensors as Keras weights: flat lists of (Keras path, GGUF name, convert).

An architecture module states its mapping as data, like KerasHub's converters:
the weights outside the blocks, and one block's weights with the block index
left out; `weights` walks them and reads each tensor only when it is needed.
"""


def same(value):
    return value


def transpose(value):
    """`(out, in)` as GGUF stores a linear weight → a Keras `(in, out)` kernel."""
    return value.T


def weights(f, top, block, num_layers, keras_block, gguf_block="blk.{}."):
    """Yields `(keras path, gguf name, value)` for `top`, then `block` per block.

    Args:
        f: a `GGUFFile`.
        top: `(keras path, gguf name, convert)` outside the blocks.
        block: the same for one block, paths relative to the block prefixes.
        num_layers: how many blocks.
        keras_block, gguf_block: the block prefixes, formatted with the index.
    """
    for path, name, convert in top:
        yield path, name, convert(f.tensor(name))
    for index in range(num_layers):
        k, g = keras_block.format(index), gguf_block.format(index)
        for path, name, convert in block:
            yield k + path, g + name, convert(f.tensor(g + name))
