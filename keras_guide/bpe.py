"""A small byte-level BPE (GPT-2 style): trainer, encoder, GPT-2's file formats.

The trainer works on a word-frequency table (pre-tokenized words and their
counts), so training on the plays takes seconds in pure Python. Its output is
GPT-2's format: a `vocabulary` mapping byte-level token strings to ids and a
list of `merges` ("a b" lines, in rank order), which
`keras_hub.models.GPT2Tokenizer` consumes directly. The encoder here applies
the same merges in pure Python, so a data pipeline needs neither TensorFlow
nor the `tokenizers` package and gives the same ids on every backend. The
demo's tokenizer is one (`keras_guide.demo.tokenizer`, its shipped files);
`keras-guide --tokenizer FOLDER` reads any other.

Reference: Sennrich et al. 2016 (BPE); Radford et al. 2019 (byte-level BPE).
"""

import collections
import heapq
import json
import os

import regex

END_OF_TEXT = "<|endoftext|>"

# GPT-2's pre-tokenization: contractions, words with one leading space,
# numbers, punctuation runs, and whitespace (a trailing space before a word is
# left for the word).
SPLIT_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

VOCABULARY_FILE = "vocabulary.json"
MERGES_FILE = "merges.txt"


def bytes_to_unicode():
    """Returns GPT-2's reversible map from the 256 byte values to printable chars."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def pre_tokenize(text):
    """Splits `text` into GPT-2 words, each as its byte-level unicode string."""
    return [
        "".join(_BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
        for word in SPLIT_PATTERN.findall(text)
    ]


def word_counts(texts):
    """Counts the byte-level words of an iterable of strings."""
    counts = collections.Counter()
    for text in texts:
        counts.update(pre_tokenize(text))
    return counts


def train_bpe(counts, vocabulary_size):
    """Learns byte-level BPE merges from a word-frequency table.

    Starts from the 256 byte symbols and repeatedly merges the most frequent
    adjacent pair (counted with word multiplicity; ties go to the smallest pair,
    so the result is deterministic) until the vocabulary, with `<|endoftext|>`
    as its last id, has `vocabulary_size` entries. Only the words that hold
    the merged pair are updated at each step.

    Args:
        counts: mapping from byte-level word string to its count.
        vocabulary_size: int, final size including the 256 bytes and
            `<|endoftext|>`.

    Returns:
        `(vocabulary, merges)`: a dict token -> id and a list of "a b" strings.

    Raises:
        ValueError: if `vocabulary_size` cannot hold the 256 bytes and
            `<|endoftext|>`.
    """
    if vocabulary_size < 257:
        raise ValueError(
            "`vocabulary_size` must be at least 257 (256 bytes and "
            f"{END_OF_TEXT}). Received: vocabulary_size={vocabulary_size}"
        )
    words = [list(word) for word in sorted(counts)]
    freqs = [counts["".join(word)] for word in words]
    pair_counts = collections.defaultdict(int)
    pair_words = collections.defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            pair_words[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    vocabulary = {_BYTE_TO_CHAR[b]: b for b in range(256)}
    merges = []
    num_merges = vocabulary_size - 257
    while len(merges) < num_merges and heap:
        negative_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative_count or negative_count == 0:
            continue
        merged = pair[0] + pair[1]
        merges.append(f"{pair[0]} {pair[1]}")
        vocabulary[merged] = len(vocabulary)
        changed = collections.defaultdict(int)
        for index in pair_words.pop(pair):
            word, freq = words[index], freqs[index]
            for old in zip(word, word[1:]):
                changed[old] -= freq
            new_word, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    new_word.append(merged)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            words[index] = new_word
            for new in zip(new_word, new_word[1:]):
                changed[new] += freq
                pair_words[new].add(index)
        del pair_counts[pair]
        for other, delta in changed.items():
            if other == pair or delta == 0:
                continue
            pair_counts[other] += delta
            if pair_counts[other] > 0:
                heapq.heappush(heap, (-pair_counts[other], other))
            else:
                del pair_counts[other]
    vocabulary[END_OF_TEXT] = len(vocabulary)
    return vocabulary, merges


class BPEEncoder:
    """Encodes and decodes text with a byte-level BPE `vocabulary` and `merges`.

    Pure Python with a per-word cache; gives the ids that GPT-2's reference
    encoder gives for the same vocabulary and merges. `<|endoftext|>` is never
    produced from text; add `end_token_id` yourself.

    Args:
        vocabulary: dict token string -> id, holding `<|endoftext|>`.
        merges: list of "a b" merge rules in rank order.
    """

    def __init__(self, vocabulary, merges):
        if END_OF_TEXT not in vocabulary:
            raise ValueError(
                f"`vocabulary` must hold {END_OF_TEXT!r}. Received a vocabulary "
                f"of {len(vocabulary)} tokens without it."
            )
        self.vocabulary = dict(vocabulary)
        self.merges = list(merges)
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(self.merges)}
        self.id_to_token = {i: t for t, i in self.vocabulary.items()}
        self.end_token_id = self.vocabulary[END_OF_TEXT]
        self._cache = {}

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def _bpe(self, word):
        symbols = list(word)
        while len(symbols) > 1:
            pairs = [
                (self.ranks.get(p, len(self.ranks)), i)
                for i, p in enumerate(zip(symbols, symbols[1:]))
            ]
            rank, i = min(pairs)
            if rank == len(self.ranks):
                break
            first, second = symbols[i], symbols[i + 1]
            merged, j = [], 0
            while j < len(symbols):
                if (
                    j + 1 < len(symbols)
                    and symbols[j] == first
                    and symbols[j + 1] == second
                ):
                    merged.append(first + second)
                    j += 2
                else:
                    merged.append(symbols[j])
                    j += 1
            symbols = merged
        return [self.vocabulary[s] for s in symbols]

    def encode(self, text):
        """Returns the list of token ids of `text`."""
        ids = []
        for word in pre_tokenize(text):
            cached = self._cache.get(word)
            if cached is None:
                cached = self._cache[word] = self._bpe(word)
            ids.extend(cached)
        return ids

    def decode(self, ids):
        """Returns the text of a sequence of token ids (`<|endoftext|>` kept)."""
        text = "".join(self.id_to_token[int(i)] for i in ids)
        data = bytearray()
        pieces = text.split(END_OF_TEXT)
        for k, piece in enumerate(pieces):
            if k:
                data.extend(END_OF_TEXT.encode("utf-8"))
            data.extend(_CHAR_TO_BYTE[c] for c in piece)
        return data.decode("utf-8", errors="replace")


def save_bpe(vocabulary, merges, directory):
    """Writes `vocabulary.json` and `merges.txt` (GPT-2's file formats)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, VOCABULARY_FILE), "w", encoding="utf-8") as f:
        json.dump(vocabulary, f, ensure_ascii=False, indent=0)
    with open(os.path.join(directory, MERGES_FILE), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in merges:
            f.write(merge + "\n")


def load_bpe(directory):
    """Reads `(vocabulary, merges)` written by `save_bpe`."""
    with open(os.path.join(directory, VOCABULARY_FILE), encoding="utf-8") as f:
        vocabulary = json.load(f)
    with open(os.path.join(directory, MERGES_FILE), encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f]
    merges = [m for m in merges if m and not m.startswith("#version")]
    return vocabulary, merges


def load_encoder(directory):
    """Returns a `BPEEncoder` for the vocabulary and merges in `directory`."""
    return BPEEncoder(*load_bpe(directory))


def keras_hub_tokenizer(directory):
    """Returns a `keras_hub.models.GPT2Tokenizer` for the files in `directory`."""
    import keras_hub

    vocabulary, merges = load_bpe(directory)
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
