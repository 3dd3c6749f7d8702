"""llama.cpp GGUF checkpoints in and out of KerasHub (needs `gguf`).

`load_gguf` imports a checkpoint as a KerasHub model whose tokenizer gives
llama.cpp's token ids; `save_gguf` writes a KerasHub Llama or Gemma 3 model
(a student of any size) as a file llama.cpp runs.
"""

from keras_guide.gguf.llama_cpp_tokenizer import LlamaCppTokenizer
from keras_guide.gguf.loader import load_gguf
from keras_guide.gguf.reader import GGUFError
from keras_guide.gguf.reader import GGUFFile
from keras_guide.gguf.writer import save_gguf

__all__ = ["GGUFError", "GGUFFile", "LlamaCppTokenizer", "load_gguf", "save_gguf"]
