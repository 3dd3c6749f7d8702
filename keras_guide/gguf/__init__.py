"""llama.cpp GGUF checkpoints in and out of KerasHub (needs `gguf`).

`load_gguf` imports a checkpoint as a KerasHub model whose tokenizer gives
llama.cpp's token ids; `save_gguf` writes a KerasHub Llama or Gemma 3 model
(a student of any size) as a file llama.cpp runs, in any type of
`dtypes.DTYPES` (K-quants through llama.cpp's own quantizer,
`quantize_gguf`).

The names are imported on first use: `keras_guide.gguf.dtypes` (the type
table the command line reads) costs nothing, while the tokenizers import
KerasHub and TensorFlow, which `import keras_guide` leaves out.
"""

import importlib

# Public name → the module defining it.
_NAMES = {
    "GGUFError": "reader",
    "GGUFFile": "reader",
    "LlamaCppTokenizer": "llama_cpp_tokenizer",
    "load_gguf": "loader",
    "quantize_gguf": "quantize",
    "save_gguf": "writer",
}


def __getattr__(name):
    if name in _NAMES:
        module = importlib.import_module(f"keras_guide.gguf.{_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'keras_guide.gguf' has no attribute {name!r}")


__all__ = sorted(_NAMES)
