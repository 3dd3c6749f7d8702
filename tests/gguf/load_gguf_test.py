import keras
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the GGUF importer needs `pip install gguf`")

from keras_guide.gguf import GGUFError  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402
from tests.harness import gguf_reference as reference  # noqa: E402

Q = gguf.GGMLQuantizationType


def keras_logits(lm, ids):
    x = {
        "token_ids": np.asarray(ids, "int32")[None],
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    return keras.ops.convert_to_numpy(lm(x)).astype(np.float64)[0]


def assert_relative(actual, expected, tol=1e-4):
    error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert error < tol, f"max relative error {error:.3g} >= {tol}"


@pytest.mark.parametrize("quant", [Q.F32, Q.Q8_0, Q.Q4_1])
def test_llama_matches_llama_cpp_layout_reference(tmp_path, quant):
    path = tiny.write_llama(tmp_path / "llama.gguf", quant=quant)
    lm = load_gguf(path)
    assert type(lm).__name__ == "Llama3CausalLM"
    assert lm.backbone.token_embedding.tie_weights
    ids = tiny.token_ids(lm.backbone.vocabulary_size)
    assert_relative(keras_logits(lm, ids), reference.llama_logits(str(path), ids))


def test_untied_sentencepiece_llama(tmp_path):
    path = tiny.write_llama(
        tmp_path / "llama.gguf",
        tied=False,
        tokenizer="llama",
        metadata={"tokenizer.ggml.unknown_token_id": 3},
    )
    lm = load_gguf(path)
    assert type(lm).__name__ == "LlamaCausalLM"
    assert not lm.backbone.token_embedding.tie_weights
    ids = tiny.token_ids(lm.backbone.vocabulary_size, seed=1)
    assert_relative(keras_logits(lm, ids), reference.llama_logits(str(path), ids))


def test_gemma3_matches_reference_with_sliding_window(tmp_path):
    path = tiny.write_gemma3(tmp_path / "gemma3.gguf")
    lm = load_gguf(path)
    assert type(lm).__name__ == "Gemma3CausalLM"
    config = lm.backbone.get_config()
    assert config["use_sliding_window_attention"] and config["sliding_window_size"] == 3
    ids = tiny.token_ids(lm.backbone.vocabulary_size, seed=2)
    assert_relative(keras_logits(lm, ids), reference.gemma3_logits(str(path), ids))


def test_byte_pair_tokenizer_from_file_vocabulary(tmp_path):
    lm = load_gguf(tiny.write_llama(tmp_path / "llama.gguf"))
    tokenizer = lm.preprocessor.tokenizer
    tokens, _, _ = tiny.bpe_vocabulary()
    ids = keras.ops.convert_to_numpy(tokenizer(" the in")).tolist()
    assert [tokens[i] for i in ids] == ["Ġthe", "Ġ", "in"]
    assert tokenizer.detokenize(ids) == " the in"
    assert tokenizer.start_token_id == 1 and tokenizer.end_token_id == 2
    assert not lm.preprocessor.add_start_token


def test_sentencepiece_tokenizer_from_file_vocabulary(tmp_path):
    lm = load_gguf(tiny.write_gemma3(tmp_path / "gemma3.gguf"))
    tokenizer = lm.preprocessor.tokenizer
    tokens, _, _ = tiny.sentencepiece_vocabulary()
    ids = keras.ops.convert_to_numpy(tokenizer("the a")).tolist()
    assert [tokens[i] for i in ids] == ["t", "he", "▁a"]
    assert tokenizer.detokenize(ids) == "the a"
    # A character outside the pieces falls back to its UTF-8 bytes.
    ids = keras.ops.convert_to_numpy(tokenizer("é")).tolist()
    assert [tokens[i] for i in ids] == ["<0xC3>", "<0xA9>"]
    assert lm.preprocessor.add_start_token


def test_generates_offline(tmp_path):
    lm = load_gguf(tiny.write_llama(tmp_path / "llama.gguf"))
    text = lm.generate(" the", max_length=6)
    assert isinstance(text, str) and text.startswith(" the")


def test_bfloat16_model(tmp_path):
    path = tiny.write_llama(tmp_path / "llama.gguf")
    lm = load_gguf(path, dtype="bfloat16")
    assert lm.backbone.token_embedding.embeddings.dtype == "bfloat16"
    ids = tiny.token_ids(lm.backbone.vocabulary_size)
    assert_relative(
        keras_logits(lm, ids), reference.llama_logits(str(path), ids), tol=0.1
    )


# Bad input: each error names the file and what was found.


def test_missing_and_non_gguf_files(tmp_path):
    with pytest.raises(GGUFError, match="No GGUF file at"):
        load_gguf(tmp_path / "absent.gguf")
    text = tmp_path / "model.gguf"
    text.write_text("not a checkpoint")
    with pytest.raises(
        GGUFError, match=r"model.gguf` is not a GGUF file: it starts with b'not "
    ):
        load_gguf(text)


def test_truncated_file(tmp_path):
    path = tiny.write_llama(tmp_path / "llama.gguf")
    data = path.read_bytes()
    for keep in (len(data) - 100, 200):
        cut = tmp_path / f"cut{keep}.gguf"
        cut.write_bytes(data[:keep])
        with pytest.raises(GGUFError, match=f"cut{keep}.gguf"):
            load_gguf(cut)


def test_unsupported_architecture_and_tokenizer(tmp_path):
    path = tiny.write_llama(tmp_path / "llama.gguf", metadata={})
    data = path.read_bytes().replace(b"llama", b"lla2a", 1)
    (tmp_path / "other.gguf").write_bytes(data)
    with pytest.raises(
        GGUFError,
        match=r"holds a 'lla2a' model; keras_guide imports \['gemma3', 'llama'\]",
    ):
        load_gguf(tmp_path / "other.gguf")
    path = tiny.write_llama(tmp_path / "bert.gguf", tokenizer="bert")
    with pytest.raises(GGUFError, match=r"tokenizer model 'bert'"):
        load_gguf(path)


def test_missing_unknown_and_unsupported_tensors(tmp_path):
    path = tiny.write_llama(tmp_path / "a.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(GGUFError, match=r"has no tensor `blk.1.ffn_up.weight`"):
        load_gguf(path)
    path = tiny.write_llama(tmp_path / "b.gguf", extra=("blk.0.attn_q.bias",))
    with pytest.raises(
        GGUFError,
        match=r"tensors the importer does not understand \['blk.0.attn_q.bias'\]",
    ):
        load_gguf(path)
    path = tiny.write_llama(tmp_path / "c.gguf", extra=("rope_freqs.weight",))
    with pytest.raises(GGUFError, match="per-frequency RoPE factors"):
        load_gguf(path)


def test_quantization_the_reader_cannot_dequantize(tmp_path, monkeypatch):
    path = tiny.write_llama(tmp_path / "llama.gguf")

    def refuse(data, qtype):
        raise NotImplementedError(
            f"Dequantization for {qtype.name} is not yet implemented"
        )

    monkeypatch.setattr(gguf.quants, "dequantize", refuse)
    with pytest.raises(GGUFError, match=r"`token_embd.weight` of .* is stored as Q8_0"):
        load_gguf(path)


@pytest.mark.parametrize("writer", [tiny.write_llama, tiny.write_gemma3])
def test_imported_models_save_and_load_with_their_tokenizer(tmp_path, writer):
    lm = load_gguf(writer(tmp_path / "model.gguf"))
    lm.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert (
        again.backbone.token_embedding.tie_weights
        == lm.backbone.token_embedding.tie_weights
    )
    ids = tiny.token_ids(lm.backbone.vocabulary_size)
    np.testing.assert_array_equal(keras_logits(again, ids), keras_logits(lm, ids))
    text = " the in the"
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again.preprocessor.tokenizer(text)),
        keras.ops.convert_to_numpy(lm.preprocessor.tokenizer(text)),
    )
    assert (
        again.preprocessor.tokenizer.start_token_id
        == lm.preprocessor.tokenizer.start_token_id
    )


def test_the_package_exposes_the_importer_without_needing_gguf_at_import():
    import keras_guide

    assert keras_guide.load_gguf is load_gguf
    assert "load_gguf" in keras_guide.__all__
    with pytest.raises(AttributeError, match="no attribute 'load_ggml'"):
        keras_guide.load_ggml  # noqa: B018


@pytest.mark.parametrize(
    "metadata, message",
    [
        # A tiny file declaring huge blocks: refused before any model is built.
        (
            {"llama.embedding_length": 16384},
            r"tensor `token_embd.weight` has shape "
            r"\(\d+, 32\), but the metadata describes",
        ),
        ({"llama.feed_forward_length": 1 << 20}, r"`blk.0.ffn_gate.weight` has shape"),
        ({"llama.block_count": 3}, r"no tensor `blk.2.attn_q.weight`"),
        (
            {"llama.attention.head_count": 0},
            r"`llama.attention.head_count` must be a "
            r"positive whole number. Received: 0",
        ),
        ({"llama.attention.head_count_kv": 3}, r"4 query heads cannot share 3"),
        (
            {"llama.rope.freq_base": -500.0},
            r"`llama.rope.freq_base` must be a positive "
            r"finite number. Received: -500",
        ),
        (
            {"llama.attention.layer_norm_rms_epsilon": float("nan")},
            r"layer_norm_rms_epsilon` must be a positive finite number",
        ),
        (
            {"llama.embedding_length": "wide"},
            r"must be a positive whole number. "
            r"Received: 'wide'",
        ),
    ],
)
def test_broken_metadata_is_refused_before_anything_is_allocated(
    tmp_path, metadata, message
):
    path = tiny.write_llama(tmp_path / "broken.gguf", metadata=metadata)
    with tiny.built_backbones() as built:
        with pytest.raises(GGUFError, match=message):
            load_gguf(path)
    assert not built
