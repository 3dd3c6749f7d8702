"""The llama.cpp architectures keras_guide reads and writes, in one table.

Each `Architecture` ties llama.cpp's name (`general.architecture`) to its
KerasHub classes and to the module that maps it (`llama.py`, `gemma3.py`):
how the file's metadata becomes a backbone config and back, and every weight
as `(keras path, gguf name, layout, keras shape)` (`mapping.py`). `load_gguf`
and `save_gguf` both look architectures up here, so adding one is a module
(with `CLASSES`, `backbone_config`, `metadata`, `layouts` and `KERAS_BLOCK`)
and one entry of `ARCHITECTURES`.
"""

import dataclasses
from collections.abc import Callable

from keras_guide.gguf import gemma3
from keras_guide.gguf import llama
from keras_guide.gguf import mapping
from keras_guide.gguf.reader import GGUFError


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one llama.cpp architecture maps onto KerasHub.

    Attributes:
        name: str. llama.cpp's name for it (`general.architecture`).
        classes: dict. KerasHub class names `(backbone, tokenizer,
            preprocessor, task)` by the file's tokenizer model
            (`tokenizer.ggml.model`).
        read_config: callable. `read_config(f)`: a `GGUFFile`'s metadata as
            the backbone's arguments, each checked.
        write_metadata: callable. `write_metadata(config)`: a backbone
            config as the file's `<name>.*` keys (without the prefix).
        layouts: callable. `layouts(config, backbone)`: `(top, block)`,
            every weight as `(keras path, gguf name, layout, keras shape)`.
        keras_block: str. The backbone's block prefix, formatted with the
            block index.
    """

    name: str
    classes: dict
    read_config: Callable
    write_metadata: Callable
    layouts: Callable
    keras_block: str

    @property
    def backbones(self):
        """The KerasHub backbone class names of this architecture."""
        return sorted({names[0] for names in self.classes.values()})

    def file_shapes(self, config):
        """`{gguf name: shape}` of every tensor a file of `config` holds."""
        return mapping.file_shapes(
            *self.layouts(config, None), config["num_layers"], self.keras_block
        )

    def backbone_config(self, f):
        """`read_config(f)`, every tensor's shape checked against it before
        anything is built."""
        config = self.read_config(f)
        f.check_shapes(self.file_shapes(config))
        return config

    def weights(self, f, config, backbone):
        """Yields `(keras weight path, gguf tensor name, value)` for every weight."""
        top, block = self.layouts(config, backbone)
        return mapping.weights(f, top, block, config["num_layers"], self.keras_block)

    def tensors(self, read, config, backbone):
        """Yields `(gguf tensor name, array, keras path)` for every weight."""
        top, block = self.layouts(config, backbone)
        return mapping.tensors(read, top, block, config["num_layers"], self.keras_block)


def _of_module(name, module):
    """The `Architecture` a mapping module states: its `CLASSES`,
    `backbone_config`, `metadata`, `layouts` and `KERAS_BLOCK`."""
    return Architecture(
        name=name,
        classes=module.CLASSES,
        read_config=module.backbone_config,
        write_metadata=module.metadata,
        layouts=module.layouts,
        keras_block=module.KERAS_BLOCK,
    )


# llama.cpp's name → its `Architecture`.
ARCHITECTURES = {
    arch.name: arch
    for arch in (
        _of_module("llama", llama),
        _of_module("gemma3", gemma3),
    )
}
# KerasHub backbone class name → its architecture.
_BY_BACKBONE = {
    backbone: arch for arch in ARCHITECTURES.values() for backbone in arch.backbones
}


def of_file(f):
    """The `Architecture` of a `GGUFFile`.

    Raises:
        GGUFError: an architecture not in `ARCHITECTURES` (naming those that are).
    """
    arch = ARCHITECTURES.get(f.architecture)
    if arch is None:
        raise GGUFError(
            f"`{f.path}` holds a {f.architecture!r} model; keras_guide imports "
            f"{sorted(ARCHITECTURES)}."
        )
    return arch


def of_backbone(backbone):
    """The `Architecture` a KerasHub backbone is written as.

    Raises:
        GGUFError: a backbone class no architecture maps (naming those that do).
    """
    kind = type(backbone).__name__
    if kind not in _BY_BACKBONE:
        names = " and ".join(f"`{name}`" for name in ARCHITECTURES)
        raise GGUFError(
            f"save_gguf writes {sorted(_BY_BACKBONE)} (llama.cpp's {names}); this "
            f"model is a {kind}. Save it with `model.save_to_preset(folder)` "
            "instead."
        )
    return _BY_BACKBONE[kind]
