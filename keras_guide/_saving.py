"""Files that name keras_guide's classes load after `import keras_guide`, and
say so in their metadata where it is not imported.

Keras finds a saved object's class by its registered name (here
`keras_guide>GGUFBytePairTokenizer`) in `keras.saving.get_custom_objects()`.
The classes of modules that `import keras_guide` leaves unimported (the GGUF
tokenizers import KerasHub and TensorFlow, ~3 s) are entered there as
`_Deferred` stand-ins: Keras calls `from_config` on what it finds under the
name, and the stand-in imports the module (whose decorator then puts the
class itself under the name) and hands it the config. `import keras_guide`
thus registers every class its files use at the cost of a dict entry each.

A `.keras` file or preset folder that names such a class says so in its
`metadata.json` (`keras_guide`: what to install and import); the class's
config carries the same line, so the error Keras raises where the package is
missing ends with it.
"""

import importlib
import json
import os
import zipfile

# Registered name → module defining the class, for the classes that
# `import keras_guide` does not import.
DEFERRED = {
    "keras_guide>GGUFBytePairTokenizer": "keras_guide.gguf.tokenizers",
    "keras_guide>GGUFGemma3Tokenizer": "keras_guide.gguf.tokenizers",
    "keras_guide>GGUFLlamaTokenizer": "keras_guide.gguf.tokenizers",
}
# What a file naming a keras_guide class needs, in words a user acts on.
REQUIRES = (
    "keras-guide: pip install keras-guide, then `import keras_guide` before loading"
)
_PREFIX = "keras_guide>"


class _Deferred:
    """The Keras registry's entry for a class whose module is not imported
    yet: `from_config` imports it and builds the object with the class."""

    def __init__(self, registered_name, module):
        self.registered_name = registered_name
        self.module = module

    def load(self):
        """The class itself (importing its module registers it)."""
        import keras

        importlib.import_module(self.module)
        cls = keras.saving.get_custom_objects()[self.registered_name]
        if isinstance(cls, _Deferred):
            raise TypeError(
                f"{self.module} did not register {self.registered_name}; "
                "keras_guide._saving.DEFERRED names the wrong module."
            )
        return cls

    def from_config(self, config):
        return self.load().from_config(config)

    def __repr__(self):
        return f"<deferred {self.registered_name} from {self.module}>"


def register():
    """Enters each class of `DEFERRED` in Keras' registry, unless its module
    is imported already (then the class itself is there)."""
    import keras

    registry = keras.saving.get_custom_objects()
    for name, module in DEFERRED.items():
        registry.setdefault(name, _Deferred(name, module))


def package_classes(config):
    """The keras_guide registered names a serialized config uses, sorted."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            name = value.get("registered_name")
            if isinstance(name, str) and name.startswith(_PREFIX):
                found.add(name)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)
    return sorted(found)


def _note(classes, load):
    from importlib import metadata

    try:
        version = metadata.version("keras-guide")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = None
    return {"requires": REQUIRES, "load": load, "classes": classes, "version": version}


def mark_keras_file(path):
    """Adds `keras_guide` to a `.keras` file's `metadata.json` when its model
    names keras_guide classes (the archive is rewritten beside itself and
    renamed over it). Returns the classes named."""
    with zipfile.ZipFile(path) as archive:
        classes = package_classes(json.loads(archive.read("config.json")))
        if not classes:
            return classes
        metadata = json.loads(archive.read("metadata.json"))
        metadata["keras_guide"] = _note(
            classes, "import keras_guide, then keras.saving.load_model(path)"
        )
        rewritten = path + ".metadata"
        try:
            with zipfile.ZipFile(rewritten, "w") as out:
                for info in archive.infolist():
                    if info.filename == "metadata.json":
                        out.writestr(info, json.dumps(metadata))
                        continue
                    with archive.open(info) as src, out.open(info, "w") as dst:
                        while chunk := src.read(1 << 24):
                            dst.write(chunk)
            os.replace(rewritten, path)
        finally:
            if os.path.exists(rewritten):
                os.remove(rewritten)
    return classes


def save_keras(model, path):
    """`model.save(path)`, then `mark_keras_file(path)`."""
    model.save(path)
    mark_keras_file(path)


def mark_preset(folder, description=None):
    """Adds `keras_guide` to a preset's `metadata.json` when any of its
    configs names keras_guide classes, and `description` (how the model was
    made) where given. Returns the classes named."""
    classes = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json") and name != "metadata.json":
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                classes.update(package_classes(json.load(f)))
    if classes or description:
        path = os.path.join(folder, "metadata.json")
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
        if classes:
            metadata["keras_guide"] = _note(
                sorted(classes),
                "import keras_guide, then keras_hub.models.CausalLM.from_preset("
                "folder)",
            )
        if description:
            metadata["description"] = str(description)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=4)
    return sorted(classes)
