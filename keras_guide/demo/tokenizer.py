"""The demo's byte-level BPE: the general one (`keras_guide.bpe`) with the
vocabulary and merges shipped in `keras_guide/demo/assets/`, trained on the
demo's training plays only (`scripts/train_demo_tokenizer.py`)."""

import os

from keras_guide import bpe
from keras_guide.bpe import END_OF_TEXT  # noqa: F401 (the demo's end token)
from keras_guide.bpe import save_bpe  # noqa: F401 (used to ship the assets)
from keras_guide.bpe import train_bpe  # noqa: F401
from keras_guide.bpe import word_counts  # noqa: F401

ASSETS_DIR = os.path.join(os.path.dirname(__file__), "assets")


def load_bpe(directory=ASSETS_DIR):
    """`(vocabulary, merges)` of the shipped (or given) files."""
    return bpe.load_bpe(directory)


def load_encoder(directory=ASSETS_DIR):
    """A `BPEEncoder` for the shipped (or given) vocabulary and merges."""
    return bpe.load_encoder(directory)


def keras_hub_tokenizer(directory=ASSETS_DIR):
    """A `keras_hub.models.GPT2Tokenizer` for the shipped vocabulary."""
    return bpe.keras_hub_tokenizer(directory)
