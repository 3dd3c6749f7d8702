"""llama.cpp's tokenization of a GGUF vocabulary, in Python.

A model trained on ids that its runtime would not produce learns the wrong
thing, so a student meant for llama.cpp must see llama.cpp's ids. KerasHub's
tokenizers rebuilt from a GGUF vocabulary agree with llama.cpp on prose but
not everywhere: KerasHub's byte-level BPE approximates the split pattern's
look-ahead (runs of spaces), ignores SmolLM's digit splitting, and
SentencePiece never matches Gemma's user-defined whitespace tokens (runs of
spaces and newlines stored raw). This module follows llama.cpp's own
algorithm step by step (`src/llama-vocab.cpp`, `src/unicode.cpp`):

1. Special tokens are cut out of the raw text first, longest first. Without
   `parse_special` only user-defined tokens are (control and unknown tokens
   in the text stay text), as in `llama_tokenize(..., parse_special=false)`.
2. Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the text is split by the
   pre-tokenizer's regular expressions in turn (each keeps both its matches
   and the text between them as pieces), every piece is byte-encoded, then
   merged pair by pair by merge rank (leftmost first among equal ranks).
   Some pre-tokenizers take a piece that is itself a token whole.
3. SentencePiece (`"llama"`): spaces become `▁` (and a space is prefixed
   when the file says so), then the adjacent pair with the highest score is
   merged while any pair is a token (leftmost first among equal scores);
   symbols that are not tokens are split back the way llama.cpp records
   merges, or written as byte tokens.
4. The start token is added when the file says so (`add_bos_token`).

`tests/gguf/` checks the ids against llama.cpp itself (`llama-cpp-python`)
on prose, code, runs of spaces and tabs, digits, accented letters, CJK and
emoji, for both real checkpoints.
"""

import heapq

from keras_guide.bpe import bytes_to_unicode
from keras_guide.gguf.reader import GGUFError

_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# The pre-tokenizers' regular expressions (llama.cpp's `llm_tokenizer_bpe`),
# by the names `tokenizer.ggml.pre` takes. llama.cpp implements some of them
# by hand; these are the expressions those implementations follow.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# (pre-tokenizer names, expressions, whether a piece that is a token is kept
# whole: llama.cpp's `ignore_merges`)
_PRE_TOKENIZERS = (
    (
        ("default",),
        (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
        False,
    ),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"), (_LLAMA3,), True),
    (("dbrx", "smaug-bpe"), (_LLAMA3,), False),
    (
        ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"),
        (r"\p{N}", _GPT2),
        False,
    ),
    (
        (
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "roberta-bpe",
            "jina-v1-en",
            "jina-v2-code",
            "jina-es",
            "jina-de",
            "gigachat",
        ),
        (_GPT2,),
        False,
    ),
    (("qwen2", "stablelm2", "deepseek-r1-qwen"), (_QWEN2,), False),
)
PRE_TOKENIZERS = {
    name: (patterns, whole)
    for names, patterns, whole in _PRE_TOKENIZERS
    for name in names
}


def _regex():
    try:
        import regex
    except ImportError as error:  # pragma: no cover (a KerasHub dependency)
        raise ImportError(
            "llama.cpp's byte-level BPE needs the `regex` package: pip install regex"
        ) from error
    return regex


def _split(pieces, pattern):
    """Each piece cut into the pattern's matches and the text between them."""
    out = []
    for piece in pieces:
        start = 0
        for match in pattern.finditer(piece):
            if match.start() > start:
                out.append(piece[start : match.start()])
            if match.end() > match.start():
                out.append(match.group())
            start = match.end()
        if start < len(piece):
            out.append(piece[start:])
    return out


def _join(symbols, prev, nxt, left, right, add):
    """Merges symbol `right` into its left neighbour `left` in the doubly
    linked list of symbols (`prev`, `nxt`; a merged symbol becomes empty) and
    offers the two new neighbouring pairs to `add(left, right)`."""
    symbols[left], symbols[right] = symbols[left] + symbols[right], ""
    nxt[left] = nxt[right]
    if nxt[right] >= 0:
        prev[nxt[right]] = left
    add(prev[left], left)
    add(left, nxt[left])


class LlamaCppTokenizer:
    """A GGUF vocabulary that encodes text into the ids llama.cpp gives.

    Args:
        tokens: the vocabulary, by id (`tokenizer.ggml.tokens`).
        types: each token's type (`tokenizer.ggml.token_type`: 1 normal,
            2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
        model: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
        merges: the BPE merges, `"left right"` by rank (`"gpt2"` only).
        scores: the pieces' scores (`"llama"` only).
        pre: the BPE pre-tokenizer's name (`tokenizer.ggml.pre`).
        bos_id: the start token's id, or `None`.
        eos_id: the end token's id, or `None`.
        add_bos: whether `encode` starts with `bos_id` (`add_special=True`).
        add_eos: whether `encode` ends with `eos_id` (`add_special=True`).
        add_space_prefix: whether a SentencePiece text gets a leading space.

    Raises:
        GGUFError: an unknown model or pre-tokenizer, a vocabulary that
            repeats a token, or lists that do not match.
    """

    def __init__(
        self,
        tokens,
        types,
        *,
        model,
        merges=None,
        scores=None,
        pre="default",
        bos_id=None,
        eos_id=None,
        add_bos=False,
        add_eos=False,
        add_space_prefix=None,
    ):
        if model not in ("gpt2", "llama"):
            raise GGUFError(
                f"llama.cpp tokenization is ported for the 'gpt2' (byte-level "
                f"BPE) and 'llama' (SentencePiece) models. Received: {model!r}"
            )
        tokens = list(tokens)
        types = list(types) if types is not None else [_NORMAL] * len(tokens)
        if len(types) != len(tokens):
            raise GGUFError(f"{len(tokens)} tokens but {len(types)} token types.")
        self.tokens, self.types, self.model = tokens, types, model
        self.token_to_id = {token: index for index, token in enumerate(tokens)}
        if len(self.token_to_id) != len(tokens):
            raise GGUFError("The vocabulary repeats a token; llama.cpp refuses it.")
        for name, index in (("bos_id", bos_id), ("eos_id", eos_id)):
            if index is not None and not 0 <= index < len(tokens):
                raise GGUFError(
                    f"{name} = {index} is outside the vocabulary of {len(tokens)} "
                    "tokens."
                )
        self.bos_id, self.eos_id = bos_id, eos_id
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        if (self.add_bos and bos_id is None) or (self.add_eos and eos_id is None):
            raise GGUFError("The vocabulary adds a start/end token it does not name.")
        self.pre = pre
        # Cut out of raw text before anything else, longest first.
        self._specials = sorted(
            (
                (token, index)
                for index, (token, kind) in enumerate(zip(tokens, types))
                if kind in (_CONTROL, _USER_DEFINED, _UNKNOWN) and token
            ),
            key=lambda item: -len(item[0].encode("utf-8")),
        )
        if model == "gpt2":
            self._init_bpe(merges, pre)
            self.add_space_prefix = False
        else:
            scores = list(scores) if scores is not None else [0.0] * len(tokens)
            if len(scores) != len(tokens):
                raise GGUFError(f"{len(tokens)} tokens but {len(scores)} scores.")
            self.scores = scores
            self.add_space_prefix = (
                True if add_space_prefix is None else bool(add_space_prefix)
            )

    def _init_bpe(self, merges, pre):
        if merges is None:
            raise GGUFError("A byte-level BPE vocabulary needs its merges.")
        if pre not in PRE_TOKENIZERS:
            raise GGUFError(
                f"Pre-tokenizer {pre!r} is not ported from llama.cpp; ported: "
                f"{sorted(PRE_TOKENIZERS)}."
            )
        regex = _regex()
        patterns, self._whole_words = PRE_TOKENIZERS[pre]
        self._patterns = [regex.compile(p) for p in patterns]
        self.merge_ranks = {}
        for rank, merge in enumerate(merges):
            # llama.cpp splits at the first space after the first character.
            cut = merge.find(" ", 1)
            if cut < 0:
                raise GGUFError(f"Merge {rank} ({merge!r}) is not 'left right'.")
            self.merge_ranks.setdefault((merge[:cut], merge[cut + 1 :]), rank)
        self._byte_chars = bytes_to_unicode()
        self._word_cache = {}

    @classmethod
    def from_gguf(cls, f):
        """The tokenizer of a `GGUFFile`, read from its `tokenizer.ggml.*` keys."""
        model = f.get("tokenizer.ggml.model")
        tokens = f.require("tokenizer.ggml.tokens")
        pre = f.get("tokenizer.ggml.pre") or "default"
        add_bos = f.get("tokenizer.ggml.add_bos_token")
        if add_bos is None:
            # llama.cpp's defaults: SentencePiece and Llama 3's BPE add it.
            add_bos = model == "llama" or PRE_TOKENIZERS.get(pre, (0, False))[1]
        return cls(
            tokens,
            f.get("tokenizer.ggml.token_type"),
            model=model,
            merges=f.get("tokenizer.ggml.merges"),
            scores=f.get("tokenizer.ggml.scores"),
            pre=pre,
            bos_id=f.get("tokenizer.ggml.bos_token_id"),
            eos_id=f.get("tokenizer.ggml.eos_token_id"),
            add_bos=add_bos,
            add_eos=f.get("tokenizer.ggml.add_eos_token", False),
            add_space_prefix=f.get("tokenizer.ggml.add_space_prefix"),
        )

    @property
    def vocabulary_size(self):
        return len(self.tokens)

    def encode(self, text, add_special=True, parse_special=False):
        """The ids llama.cpp's `llama_tokenize` gives `text`.

        Args:
            text: a string.
            add_special: add the start/end tokens the vocabulary asks for.
            parse_special: also read control tokens written in the text
                (e.g. `"<|im_start|>"`) as those tokens.

        Returns:
            A list of token ids.
        """
        fragments = self._partition(text, parse_special) if text else []
        out = []
        if add_special and self.add_bos:
            out.append(self.bos_id)
        previous_special = True
        for fragment in fragments:
            if isinstance(fragment, int):
                out.append(fragment)
                previous_special = True
            elif self.model == "gpt2":
                out.extend(self._bpe(fragment))
            else:
                if self.add_space_prefix and previous_special:
                    fragment = " " + fragment
                out.extend(self._spm(fragment.replace(" ", "▁")))
                previous_special = False
        if add_special and self.add_eos:
            out.append(self.eos_id)
        return out

    def _partition(self, text, parse_special):
        """Raw text cut at special tokens: a list of strings and token ids."""
        fragments = [text]
        for token, index in self._specials:
            kind = self.types[index]
            if not parse_special and kind in (_CONTROL, _UNKNOWN):
                continue
            cut = []
            for fragment in fragments:
                if isinstance(fragment, int) or token not in fragment:
                    cut.append(fragment)
                    continue
                parts = fragment.split(token)
                for position, part in enumerate(parts):
                    if part:
                        cut.append(part)
                    if position < len(parts) - 1:
                        cut.append(index)
            fragments = cut
        return fragments

    # Byte-level BPE.

    def _bpe(self, text):
        pieces = [text]
        for pattern in self._patterns:
            pieces = _split(pieces, pattern)
        out = []
        for piece in pieces:
            ids = self._word_cache.get(piece)
            if ids is None:
                word = "".join(self._byte_chars[b] for b in piece.encode("utf-8"))
                ids = self._bpe_word(word)
                if len(self._word_cache) < 1 << 20:
                    self._word_cache[piece] = ids
            out.extend(ids)
        return out

    def _bpe_word(self, word):
        if self._whole_words and word in self.token_to_id:
            return [self.token_to_id[word]]
        symbols = list(word)
        # A doubly linked list of symbols; merged ones become empty.
        prev = list(range(-1, len(symbols) - 1))
        nxt = list(range(1, len(symbols))) + [-1]
        heap = []

        def add(left, right):
            if left < 0 or right < 0:
                return
            rank = self.merge_ranks.get((symbols[left], symbols[right]))
            if rank is not None:
                heapq.heappush(
                    heap, (rank, left, right, symbols[left] + symbols[right])
                )

        for i in range(1, len(symbols)):
            add(i - 1, i)
        while heap:
            _, left, right, text = heapq.heappop(heap)
            if not symbols[left] or not symbols[right]:
                continue
            if symbols[left] + symbols[right] != text:
                continue  # outdated
            _join(symbols, prev, nxt, left, right, add)
        ids = []
        for symbol in symbols:
            if not symbol:
                continue
            index = self.token_to_id.get(symbol)
            if index is not None:
                ids.append(index)
                continue
            # llama.cpp looks up each byte of the symbol's UTF-8 on its own.
            for byte in symbol.encode("utf-8"):
                index = self.token_to_id.get(chr(byte)) if byte < 0x80 else None
                if index is not None:
                    ids.append(index)
        return ids

    # SentencePiece.

    def _spm(self, text):
        symbols = list(text)
        count = len(symbols)
        if not count:
            return []
        nxt = list(range(1, count)) + [-1]
        prev = list(range(-1, count - 1))
        heap = []
        # llama.cpp remembers, by text, the last pair that could form it.
        rev_merge = {}

        def add(left, right):
            if left < 0 or right < 0:
                return
            text = symbols[left] + symbols[right]
            index = self.token_to_id.get(text)
            if index is None:
                return
            heapq.heappush(heap, (-self.scores[index], left, right, len(text)))
            rev_merge[text] = (left, right)

        for i in range(1, count):
            add(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            a, b = symbols[left], symbols[right]
            if not a or not b or len(a) + len(b) != size:
                continue
            _join(symbols, prev, nxt, left, right, add)
        out = []
        i = 0
        while i != -1:
            self._resegment(symbols, i, rev_merge, out)
            i = nxt[i]
        return out

    def _resegment(self, symbols, index, rev_merge, out):
        text = symbols[index]
        token = self.token_to_id.get(text)
        if token is not None:
            out.append(token)
            return
        pair = rev_merge.get(text)
        if pair is None:
            for byte in text.encode("utf-8"):
                out.append(self._byte_token(byte))
            return
        self._resegment(symbols, pair[0], rev_merge, out)
        self._resegment(symbols, pair[1], rev_merge, out)

    def _byte_token(self, byte):
        index = self.token_to_id.get(f"<0x{byte:02X}>")
        if index is None and byte < 0x80:
            index = self.token_to_id.get(chr(byte))
        if index is None:
            raise GGUFError(
                f"The vocabulary has no byte token for 0x{byte:02X}, which "
                "llama.cpp needs for a character outside its pieces."
            )
        return index
