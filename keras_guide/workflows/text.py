"""Text to batches: cleaned documents, windows, fixed-order batches.

Each document becomes `<|endoftext|> text <|endoftext|>`, cut into windows of
`sequence_length + 1` tokens with stride `sequence_length` (so each token is a
target exactly once); the last window of a document is padded, and the
padding is masked out of `padding_mask` and `sample_weight`.

A model whose tokenizer starts every sequence with a start token (Gemma's
`<bos>`: without it Gemma 3 270M's loss on English rises by nats) sees it at
the start of every window instead: each document becomes `text <end>`, and
each window `<start>` followed by the next `sequence_length` tokens, so every
token of the text is still a target exactly once.

An encoder is anything with `encode(text) -> list of ids` and `end_token_id`
(and optionally `vocabulary_size` and `start_token_id`): the demo's BPE, or
`HubEncoder` over a KerasHub tokenizer.
"""

import glob
import os
import re

import numpy as np

from keras_guide.adapters import backbone_of

_GUTENBERG_START = re.compile(
    r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M
)
_GUTENBERG_END = re.compile(
    r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)"
    r".*$",
    re.M | re.I,
)


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
        text = text[start.end() :]
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


def text_files(path):
    """Returns the sorted `.txt` files under `path` (a file or a folder)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.txt"), recursive=True))
    else:
        files = [path]
    if not files:
        raise FileNotFoundError(f"No .txt files found under {path!r}.")
    return files


# Share of characters that may fail to decode before a file is refused as
# not UTF-8 text (a stray byte passes; a Latin-1 or binary file does not).
_UNDECODABLE = 0.001


def read_text(path, max_chars=None):
    """A UTF-8 text file's text (the first `max_chars` characters).

    Raises:
        ValueError: the file is binary (holds NUL bytes) or not UTF-8 (more
            than 0.1 % of its characters cannot be decoded), naming it.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read() if max_chars is None else f.read(max_chars)
    bad = text.count("\ufffd")
    if "\x00" in text or bad > max(1, _UNDECODABLE * len(text)):
        why = (
            "it holds NUL bytes"
            if "\x00" in text
            else f"{bad} of its {len(text)} characters do not decode"
        )
        raise ValueError(
            f"{path} is not UTF-8 text ({why}). Pass text files; convert other "
            "encodings first (e.g. iconv -f latin1 -t utf-8)."
        )
    return text


def tokenize_documents(texts, encoder):
    """Returns one int32 array per text: `[eot] + encode(text) + [eot]`, or
    `encode(text) + [eot]` for an encoder with a `start_token_id` (that token
    begins every window instead, see `make_windows`)."""
    eot = encoder.end_token_id
    head = [] if start_token_id(encoder) is not None else [eot]
    return [
        np.asarray(head + encoder.encode(text) + [eot], dtype=np.int32)
        for text in texts
    ]


def start_token_id(encoder):
    """The token every window starts with, or None (the encoder's
    `start_token_id`, set only for tokenizers that add one)."""
    return getattr(encoder, "start_token_id", None)


def make_windows(documents, sequence_length, pad_id, start_id=None):
    """Cuts documents into `(tokens, mask)` windows of `sequence_length + 1`.

    Windows start every `sequence_length` tokens within a document and never
    cross documents; the last window of a document is padded with `pad_id`.
    With `start_id`, each window is that token followed by the next
    `sequence_length` tokens of the document (so the first of them is a
    target too).

    Returns:
        `(tokens, mask)`, int32 arrays of shape `(num_windows, sequence_length + 1)`;
        `mask` is 1 on real tokens.
    """
    width = sequence_length + 1
    head = np.asarray([] if start_id is None else [start_id], np.int32)
    tokens, masks = [], []
    for doc in documents:
        last = max(len(doc) - 1, 1) if start_id is None else max(len(doc), 1)
        for start in range(0, last, sequence_length):
            chunk = np.concatenate([head, doc[start : start + width - len(head)]])
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
                "`batch_size` must be at most the number of windows "
                f"({len(tokens)}). Received: batch_size={batch_size}"
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

    def rows(self, step):
        """The window indices batch number `step` holds."""
        epoch, k = divmod(int(step), self.batches_per_epoch)
        return self._order(epoch)[k * self.batch_size : (k + 1) * self.batch_size]

    def batch(self, step):
        """Returns batch number `step` as `(x, y, sample_weight)`."""
        rows = self.rows(step)
        return window_batch(self.tokens[rows], self.mask[rows])


def eval_batches(tokens, mask, batch_size, max_windows=None):
    """Returns the evaluation batches in order (optionally an even subset).

    With `max_windows`, keeps `max_windows` windows evenly spaced over the
    held-out set (a fixed subset, the same for every model).
    """
    if max_windows is not None and max_windows < len(tokens):
        rows = np.round(np.linspace(0, len(tokens) - 1, max_windows)).astype(int)
        tokens, mask = tokens[rows], mask[rows]
    return [
        window_batch(tokens[i : i + batch_size], mask[i : i + batch_size])
        for i in range(0, len(tokens), batch_size)
    ]


def split_documents(paths, held_out=None):
    """The cleaned training and held-out documents of text files.

    The held-out text is `held_out` (files or folders) when given; otherwise
    every tenth file (sorted) when there are at least ten, else the last
    10 % of each file's characters, cut at a line start. The rule is fixed:
    it never looks at results.

    Returns:
        `(train, held_out)`: lists of strings (`strip_gutenberg`'s text).
    """
    files = sorted({f for p in paths for f in text_files(p)})
    held_files = sorted({f for p in (held_out or []) for f in text_files(p)})

    def docs(names):
        return [strip_gutenberg(read_text(name)) for name in names]

    if held_files:
        return docs([f for f in files if f not in held_files]), docs(held_files)
    if len(files) >= 10:
        return (
            docs([f for i, f in enumerate(files) if i % 10 != 9]),
            docs([f for i, f in enumerate(files) if i % 10 == 9]),
        )
    train, held = [], []
    for doc in docs(files):
        cut = int(len(doc) * 0.9)
        cut = doc.rfind("\n", 0, cut) + 1 or cut
        train.append(doc[:cut])
        held.append(doc[cut:])
    return train, held


def text_windows(paths, encoder, sequence_length, held_out=None):
    """Tokenizes text files into training and held-out windows
    (`split_documents`' split).

    Returns:
        `(train, held_out)`, each `(tokens, mask)` from `make_windows`.
    """
    train, held = split_documents(paths, held_out)
    pad, start = encoder.end_token_id, start_token_id(encoder)
    return (
        make_windows(tokenize_documents(train, encoder), sequence_length, pad, start),
        make_windows(tokenize_documents(held, encoder), sequence_length, pad, start),
    )


def sequence_length(model, requested=None):
    """The window length for `model`: `requested`, or its
    `max_sequence_length` capped at 128.

    Raises:
        ValueError: if `requested` exceeds the model's `max_sequence_length`.
    """
    limit = model.backbone.get_config().get("max_sequence_length")
    if requested is None:
        return min(limit or 128, 128)
    if limit is not None and requested > limit:
        raise ValueError(
            f"`sequence_length` must be at most the model's max_sequence_length "
            f"({limit}). Received: sequence_length={requested}"
        )
    return int(requested)


class HubEncoder:
    """`encode`/`end_token_id` over a KerasHub tokenizer.

    A tokenizer built over a GGUF vocabulary (`keras_guide.gguf`) encodes
    each text whole with llama.cpp's algorithm, so the ids are those
    llama.cpp gives; any other KerasHub tokenizer encodes line by line.
    `start_token_id` is the tokenizer's start token when `add_start_token`
    (its preprocessor prepends one), else None.
    """

    def __init__(self, tokenizer, add_start_token=False):
        self.tokenizer = tokenizer
        build = getattr(tokenizer, "llama_cpp_tokenizer", None)
        self._llama_cpp = build() if build is not None else None
        self.start_token_id = (
            getattr(tokenizer, "start_token_id", None) if add_start_token else None
        )
        self.vocabulary_size = tokenizer.vocabulary_size()
        self.end_token_id = getattr(tokenizer, "end_token_id", None)
        if self.end_token_id is None:
            self.end_token_id = getattr(tokenizer, "pad_token_id", 0) or 0

    def encode(self, text):
        if self._llama_cpp is not None:
            return self._llama_cpp.encode(text, add_special=False)
        lines = text.splitlines(keepends=True)
        ids = []
        for start in range(0, len(lines), 256):
            for row in self.tokenizer(lines[start : start + 256]):
                ids.extend(int(i) for i in np.asarray(row).reshape(-1))
        return ids


def model_encoder(model):
    """A `HubEncoder` over `model`'s preprocessor's tokenizer, or None."""
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None and getattr(preprocessor, "tokenizer", None):
        return HubEncoder(
            preprocessor.tokenizer,
            add_start_token=bool(getattr(preprocessor, "add_start_token", False)),
        )
    return None


def check_vocabulary(encoder, model, role):
    """Raises a `ValueError` if `encoder` yields ids beyond `model`'s vocabulary."""
    size = getattr(encoder, "vocabulary_size", None)
    if callable(size):
        size = size()
    backbone = backbone_of(model)
    vocab = getattr(backbone, "vocabulary_size", None)
    if size is not None and vocab is not None and size > vocab:
        raise ValueError(
            f"The tokenizer has {size} tokens but the {role} a vocabulary of "
            f"{vocab}. Pass the tokenizer the {role} was trained with (--tokenizer)."
        )


def _run_hashes(windows, length):
    """A hash of every `length`-token run of the windows' real tokens, read in
    order (windows are cut from documents in order)."""
    tokens, mask = windows
    stream = tokens[mask.astype(bool)].astype(np.uint64)
    count = len(stream) - length + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    hashes = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(length):
            hashes = hashes * np.uint64(1_000_003) + stream[j : j + count]
    return hashes


def check_overlap(train, held, length=16, limit=0.05):
    """Refuses evaluation text that repeats the training text.

    Every `length`-token run of the held-out text is looked up among the
    training text's runs.

    Returns:
        The share of held-out runs found in the training text.

    Raises:
        ValueError: more than `limit` of them are.
    """
    held_runs = _run_hashes(held, length)
    if not len(held_runs):
        return 0.0
    share = float(np.isin(held_runs, _run_hashes(train, length)).mean())
    if share > limit:
        raise ValueError(
            f"{share:.0%} of the evaluation text's {length}-token runs also occur "
            "in the training text: the evaluation would measure memory, not "
            "generalization. Pass evaluation text (--eval) that training never "
            "sees, or leave it out to hold back a share of --text."
        )
    return share
