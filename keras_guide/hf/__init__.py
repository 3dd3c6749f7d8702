"""Hugging Face checkpoints of KerasHub models (needs `keras-guide[hf]`).

`save_hf` writes a KerasHub Llama-family or Gemma 3 model (a student of any
size) as a folder `transformers` loads (`AutoModelForCausalLM`,
`AutoTokenizer`), whose tokenizer gives llama.cpp's token ids. `load_hf` is
the way back: KerasHub's own converter, with what it drops of a Llama config
put back and the tokenizer the folder describes.
"""

from keras_guide.hf.reader import load_hf
from keras_guide.hf.tokenizer import TokenizerError
from keras_guide.hf.writer import save_hf

__all__ = ["TokenizerError", "load_hf", "save_hf"]
