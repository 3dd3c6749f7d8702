"""The port of llama.cpp's tokenization, on tiny vocabularies worked by hand.

`llama_cpp_test.py` checks it against llama.cpp itself on the real
checkpoints; these tests pin each step of the algorithm on cases small enough
to follow: special-token partitioning, pre-tokenizer pieces, merge order,
SentencePiece scores and byte fallback, the start token.
"""

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the GGUF reader needs `pip install gguf`")

from keras_guide.bpe import bytes_to_unicode  # noqa: E402
from keras_guide.gguf import GGUFError  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.gguf.llama_cpp_tokenizer import LlamaCppTokenizer  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402


def _bpe(pre="gpt-2", merges=("Ġ t", "h e", "Ġt he", "i n"), extra=(), **kwargs):
    symbols = list(bytes_to_unicode().values())
    tokens = ["<s>", "</s>", "<user>"] + symbols
    tokens += ["".join(m.split(" ")) for m in merges] + list(extra)
    types = [3, 3, 4] + [1] * (len(tokens) - 3)
    return LlamaCppTokenizer(
        tokens,
        types,
        model="gpt2",
        merges=list(merges),
        pre=pre,
        bos_id=0,
        eos_id=1,
        **kwargs,
    )


def _pieces(tokenizer, ids):
    return [tokenizer.tokens[i] for i in ids]


def test_bpe_merges_by_rank_within_pre_tokenizer_pieces():
    tok = _bpe()
    assert _pieces(tok, tok.encode(" the in")) == ["Ġthe", "Ġ", "in"]
    # "Ġt" + "he" needs both merges first; a space run keeps its last space
    # for the next word (`\s+(?!\S)`).
    assert _pieces(tok, tok.encode("  the")) == ["Ġ", "Ġthe"]
    assert _pieces(tok, tok.encode("a  ")) == ["a", "Ġ", "Ġ"]


def test_smollm_splits_every_digit_and_gpt2_keeps_runs():
    digits = "x 2026"
    smollm = _bpe(pre="smollm")
    assert _pieces(smollm, smollm.encode(digits)) == ["x", "Ġ", "2", "0", "2", "6"]
    gpt2 = _bpe(pre="gpt-2", merges=("2 0", "2 6", "Ġ 20"))
    assert _pieces(gpt2, gpt2.encode(digits)) == ["x", "Ġ20", "26"]


def test_llama3_takes_a_piece_that_is_a_token_whole():
    # "hello" is a token although no merge builds it (ignore_merges).
    whole = _bpe(pre="llama-bpe", merges=("h e",), extra=("hello",))
    assert _pieces(whole, whole.encode("hello")) == ["hello"]
    merged = _bpe(pre="dbrx", merges=("h e",), extra=("hello",))
    assert _pieces(merged, merged.encode("hello")) == ["he", "l", "l", "o"]


def test_user_defined_tokens_are_cut_out_first_control_tokens_only_when_parsed():
    tok = _bpe()
    assert tok.encode("a<user>b") == [tok.token_to_id["a"], 2, tok.token_to_id["b"]]
    as_text = tok.encode("<s>")
    assert 0 not in as_text
    assert tok.encode("<s>", parse_special=True) == [0]


def test_start_and_end_tokens():
    tok = _bpe(add_bos=True, add_eos=True)
    ids = tok.encode("in")
    assert ids[0] == 0 and ids[-1] == 1
    assert tok.encode("in", add_special=False) == ids[1:-1]
    assert tok.encode("") == [0, 1]


def _spm(specials=(("<unk>", 2), ("<s>", 3), ("</s>", 3), ("  ", 4)), **kwargs):
    tokens = [t for t, _ in specials] + [f"<0x{b:02X}>" for b in range(256)]
    types = [k for _, k in specials] + [6] * 256
    scores = [0.0] * len(tokens)
    for rank, piece in enumerate(["▁", "e", "t", "h", "▁t", "he", "▁the", "a", "▁a"]):
        tokens.append(piece)
        types.append(1)
        scores.append(-float(rank))
    return LlamaCppTokenizer(
        tokens, types, model="llama", scores=scores, bos_id=1, eos_id=2, **kwargs
    )


def test_sentencepiece_merges_by_score_and_falls_back_to_bytes():
    tok = _spm(add_space_prefix=False)
    assert _pieces(tok, tok.encode("the a")) == ["t", "he", "▁a"]
    # "é" is no piece: its two UTF-8 bytes.
    assert _pieces(tok, tok.encode("é")) == ["<0xC3>", "<0xA9>"]


def test_sentencepiece_space_prefix_and_raw_whitespace_tokens():
    tok = _spm(add_space_prefix=True, add_bos=True)
    assert _pieces(tok, tok.encode("the")) == ["<s>", "▁the"]
    # Gemma stores runs of spaces raw, as user-defined tokens: cut out
    # before spaces become "▁" (and after them a space prefix returns).
    assert _pieces(tok, tok.encode("a  the", add_special=False)) == [
        "▁a",
        "  ",
        "▁the",
    ]


def test_refuses_what_it_cannot_tokenize():
    with pytest.raises(GGUFError, match="Pre-tokenizer 'tekken' is not ported"):
        _bpe(pre="tekken")
    with pytest.raises(GGUFError, match="repeats a token"):
        LlamaCppTokenizer(["a", "a"], [1, 1], model="llama")
    with pytest.raises(GGUFError, match="'gpt2' .* and 'llama'"):
        LlamaCppTokenizer(["a"], [1], model="wpm")
    with pytest.raises(GGUFError, match="bos_id = 5 is outside"):
        LlamaCppTokenizer(["a"], [1], model="llama", bos_id=5)


@pytest.mark.parametrize("writer", [tiny.write_llama, tiny.write_gemma3])
def test_keras_tokenizer_gives_the_ports_ids(tmp_path, writer):
    lm = load_gguf(writer(tmp_path / "model.gguf"))
    tokenizer = lm.preprocessor.tokenizer
    port = tokenizer.llama_cpp_tokenizer()
    texts = ["the  a\n\n  the", " a", "12 é the"]
    batch = tokenizer(texts)
    for text, row in zip(texts, batch):
        assert np.asarray(row).tolist() == port.encode(text, add_special=False)
    single = keras.ops.convert_to_numpy(tokenizer(texts[0])).tolist()
    assert single == port.encode(texts[0], add_special=False)
    # `generate` sees the same ids after the start token the preprocessor
    # puts first.
    x = lm.preprocessor.generate_preprocess(texts[:1], sequence_length=12)
    mask = keras.ops.convert_to_numpy(x["padding_mask"])[0].astype(bool)
    got = keras.ops.convert_to_numpy(x["token_ids"])[0][mask].tolist()
    assert got[0] == tokenizer.start_token_id
    assert got[1:] == port.encode(texts[0], add_special=False)[:11]
