"""`save_hf` checked by `transformers` itself (PyTorch CPU, float32, in a
process that never imports keras_guide), every backend: tiny guided students
of both families (grouped key-value heads, tied and untied heads, a Gemma 3
head width other than width / heads, sliding-window and global blocks, RoPE
scaling) give the Keras model's logits; `AutoTokenizer` gives llama.cpp's
ids on hard texts; bad input is refused by name and leaves nothing behind.

`generation_test.py` generates with the three runtimes; `real_models_test.py`
tokenizes with the real checkpoints' vocabularies.
"""

import json
import os
import pathlib

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the GGUF reader needs `pip install gguf`")

from keras_guide import _files  # noqa: E402
from keras_guide.hf import TokenizerError  # noqa: E402
from keras_guide.hf import save_hf  # noqa: E402
from keras_guide.hf import tokenizer as hf_tokenizer  # noqa: E402
from keras_guide.hf import writer  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402
from tests.harness import models as tiny_models  # noqa: E402
from tests.hf import cases  # noqa: E402
from tests.hf import reference  # noqa: E402

CASES = [
    "llama-gqa-tied",
    "llama-untied",
    "llama-sentencepiece",
    "gemma3",
    "llama3-rope-llama3",
    "llama3-rope-linear",
]


@pytest.mark.parametrize("name", CASES)
def test_transformers_gives_the_keras_logits(exported, name):
    case = exported[name]
    info = case["answer"]["loading_info"]
    assert not any(info.values()), info  # no missing, unexpected, mismatched
    family = "Gemma3ForCausalLM" if name == "gemma3" else "LlamaForCausalLM"
    assert case["answer"]["class"] == family
    kl, agreement = reference.kl_and_agreement(case["ours"], case["theirs"])
    assert kl <= 1e-5 and agreement == 1.0, (name, kl, agreement)


def test_the_config_says_what_the_model_is(exported):
    gemma = json.load(open(exported["gemma3"]["folder"] / "config.json"))
    assert gemma["model_type"] == "gemma3_text"
    assert gemma["head_dim"] == 16 and gemma["hidden_size"] == 24
    assert gemma["query_pre_attn_scalar"] == 16
    assert gemma["sliding_window"] == 3
    assert gemma["layer_types"] == ["sliding_attention"] * 5 + [
        "full_attention",
        "sliding_attention",
    ]
    assert gemma["rope_parameters"]["sliding_attention"]["rope_theta"] == 10_000
    assert gemma["rope_parameters"]["full_attention"]["rope_theta"] == 1_000_000
    tied = json.load(open(exported["llama-gqa-tied"]["folder"] / "config.json"))
    assert tied["tie_word_embeddings"] and tied["num_key_value_heads"] == 1
    untied = json.load(open(exported["llama-sentencepiece"]["folder"] / "config.json"))
    assert not untied["tie_word_embeddings"]
    for name in CASES:
        files = sorted(os.listdir(exported[name]["folder"]))
        assert files == sorted(writer.FILES), files


@pytest.mark.parametrize("name", ["llama-gqa-tied", "llama-sentencepiece", "gemma3"])
def test_auto_tokenizer_gives_llama_cpps_ids(exported, name):
    case = exported[name]
    want = reference.llama_cpp_ids(case["teacher"], cases.HARD_TEXTS)
    answer = case["answer"]
    for index, text in enumerate(cases.HARD_TEXTS):
        # Special tokens in the text read as tokens (transformers' default),
        # and as text (llama.cpp's parse_special=False).
        assert answer["ids"][index] == want[True][index], (name, text)
        assert answer["ids_split_special"][index] == want[False][index], (name, text)
        assert answer["ids_with_specials"][index] == want["with_bos"][index], text
    # transformers' generate stops at tokens llama.cpp ends generation at.
    stops = json.load(open(case["folder"] / "generation_config.json"))["eos_token_id"]
    stops = stops if isinstance(stops, list) else [stops]
    assert set(stops) <= set(want["eog"]), (stops, want["eog"])


def test_written_from_the_gguf_or_from_the_model_the_tokenizer_is_the_same(
    exported, tmp_path
):
    case = exported["gemma3"]
    folder = pathlib.Path(
        save_hf(case["model"], tmp_path / "copy", metadata_from=case["teacher"])
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        mine = json.load(open(case["folder"] / name))
        theirs = json.load(open(folder / name))
        assert mine == theirs, name


def test_weights_in_half_precision(exported, tmp_path):
    from safetensors.numpy import load_file

    case = exported["llama-untied"]
    full = load_file(case["folder"] / "model.safetensors")
    for dtype, tolerance in (("float16", 1e-3), ("bfloat16", 8e-3)):
        folder = pathlib.Path(save_hf(case["model"], tmp_path / dtype, dtype=dtype))
        assert json.load(open(folder / "config.json"))["dtype"] == dtype
        header = json.loads(
            open(folder / "model.safetensors", "rb").read()[8:][
                : int.from_bytes(
                    open(folder / "model.safetensors", "rb").read(8), "little"
                )
            ]
        )
        assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
            {"float16": "F16", "bfloat16": "BF16"}[dtype]
        }
        if dtype == "float16":
            half = load_file(folder / "model.safetensors")
            for key, value in full.items():
                np.testing.assert_allclose(
                    half[key], value, rtol=tolerance, atol=1e-4, err_msg=key
                )


# Bad input: one line, nothing written.


def _nothing_left(folder):
    parent = os.path.dirname(os.path.abspath(folder))
    return not any(_files.is_temporary(n) for n in os.listdir(parent))


def test_an_existing_folder_is_kept_without_overwrite(exported, tmp_path):
    model = exported["llama-untied"]["model"]
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        save_hf(model, folder)
    assert os.listdir(folder) == ["mine.txt"]
    save_hf(model, folder, overwrite=True)
    assert sorted(os.listdir(folder)) == sorted(writer.FILES)
    assert _nothing_left(folder)


def test_an_unsupported_family_is_refused(tmp_path):
    model = tiny_models.gpt2(hidden=16, seed=0)
    with pytest.raises(ValueError, match="this model is a GPT2Backbone"):
        save_hf(model, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out") and _nothing_left(tmp_path / "out")


def test_a_vocabulary_tokenizer_json_cannot_express_is_refused(exported, tmp_path):
    # A merge whose result is not a token: llama.cpp applies it, tokenizers
    # cannot.
    tokens, types, merges = tiny.bpe_vocabulary()
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges + ["Ġt h"],
    }
    with pytest.raises(TokenizerError, match="'Ġth', which is not a token"):
        hf_tokenizer.files(meta, 64)
    model = exported["llama-untied"]["model"]
    with pytest.raises(ValueError, match="no preprocessor with a tokenizer"):
        save_hf(model.backbone, tmp_path / "out")
    with pytest.raises(ValueError, match="is not this model's tokenizer"):
        save_hf(model, tmp_path / "out", metadata_from=exported["gemma3"]["teacher"])
    with pytest.raises(ValueError, match="dtype must be one of"):
        save_hf(model, tmp_path / "out", dtype="q8_0")
    assert not os.path.exists(tmp_path / "out") and _nothing_left(tmp_path / "out")


def test_a_nan_weight_leaves_nothing(exported, tmp_path):
    model = exported["llama-untied"]["model"]
    variable = model.backbone.get_layer("sequence_output_layernorm").scale
    saved = keras.ops.convert_to_numpy(variable)
    variable.assign(np.full_like(saved, np.nan))
    try:
        with pytest.raises(ValueError, match="holds NaN or Inf"):
            save_hf(model, tmp_path / "out")
    finally:
        variable.assign(saved)
    assert not os.path.exists(tmp_path / "out") and _nothing_left(tmp_path / "out")
