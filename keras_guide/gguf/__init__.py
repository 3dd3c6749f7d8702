"""Importing llama.cpp GGUF checkpoints as KerasHub models (needs `gguf`)."""

from keras_guide.gguf.loader import load_gguf
from keras_guide.gguf.reader import GGUFError
from keras_guide.gguf.reader import GGUFFile

__all__ = ["GGUFError", "GGUFFile", "load_gguf"]
