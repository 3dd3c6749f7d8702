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

import keras_guide  # noqa: E402
from keras_guide import _files  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.hf import TokenizerError  # noqa: E402
from keras_guide.hf import save_hf  # noqa: E402
from keras_guide.hf import tokenizer as hf_tokenizer  # noqa: E402
from keras_guide.hf import writer  # noqa: E402
from tests.gguf.llama_cpp_test import TEXTS  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402
from tests.harness import models as tiny_models  # noqa: E402
from tests.hf import reference  # noqa: E402

# Chat markers of both tiny vocabularies, and Gemma-style markup.
HARD_TEXTS = TEXTS + [
    "<|im_start|>system\nhi<|im_end|>\n<|im_start|>user\n",
    "<bos><eos> <unk><pad>x",
    "  \n\t x  ",
]
SEQ = 12  # longer than the tiny Gemma's sliding window of 3: both masks used


def _teacher(tmp_path, name, write, **kwargs):
    return write(tmp_path / f"{name}.gguf", quant=tiny.Q.F32, **kwargs)


def _student(path, seed, **sizes):
    teacher = load_gguf(path)
    keras.utils.set_random_seed(seed)
    student = keras_guide.build_student(teacher, **sizes)
    keras_guide.guide(teacher, student)
    return student


def _rope_scaled_backbone(**rope):
    """A random Llama 3 backbone over the tiny vocabulary, with RoPE scaling."""
    import keras_hub

    keras.utils.set_random_seed(3)
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=len(tiny.bpe_vocabulary()[0]), num_layers=1,
        num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        intermediate_dim=32, tie_word_embeddings=False, **rope)


def _cases(tmp_path):
    """`{name: (model, metadata_from)}` of the tiny models written."""
    bpe = _teacher(tmp_path, "bpe", tiny.write_llama)
    untied = _teacher(tmp_path, "untied", tiny.write_llama, tied=False)
    spm = _teacher(tmp_path, "spm", tiny.write_llama, tokenizer="llama",
                   metadata={"tokenizer.ggml.unknown_token_id": 3})
    gemma = _teacher(tmp_path, "gemma", tiny.write_gemma3, layers=8)
    return {
        # Two query heads share one key-value head; the head is the table.
        "llama-gqa-tied": (_student(bpe, 0, num_layers=2, hidden_dim=16,
                                    num_heads=2, num_key_value_heads=1,
                                    intermediate_dim=40), None),
        "llama-untied": (_student(untied, 1, num_layers=1, hidden_dim=32,
                                  num_heads=4, num_key_value_heads=2,
                                  intermediate_dim=40), None),
        # SentencePiece (Llama 2), untied from a tied teacher.
        "llama-sentencepiece": (_student(spm, 2, tie_embeddings=False,
                                         num_layers=1, hidden_dim=16, num_heads=2,
                                         num_key_value_heads=2,
                                         intermediate_dim=40), None),
        # Seven blocks: five sliding-window, a global one, a sliding one; heads
        # 16 wide in a 24-wide model.
        "gemma3": (_student(gemma, 3, num_layers=7, hidden_dim=24, num_heads=2,
                            num_key_value_heads=1, intermediate_dim=40), None),
        # Backbones (the tokenizer from the GGUF file).
        "llama3-rope-llama3": (_rope_scaled_backbone(
            rope_frequency_adjustment_factor=8.0, rope_low_freq_factor=1.0,
            rope_high_freq_factor=4.0, rope_pretraining_sequence_length=16), bpe),
        "llama3-rope-linear": (_rope_scaled_backbone(
            rope_position_scaling_factor=4.0), bpe),
    }


def _ids(model):
    backbone = getattr(model, "backbone", model)
    return tiny.token_ids(backbone.vocabulary_size, seed=1, length=SEQ).tolist()


def keras_logits(model, ids):
    x = {"token_ids": np.asarray([ids], "int32"),
         "padding_mask": np.ones((1, len(ids)), "int32")}
    out = model(x)
    if not hasattr(model, "backbone"):  # a backbone: its hidden states
        out = model.token_embedding(out, reverse=True)
    return keras.ops.convert_to_numpy(out).astype(np.float64)[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case written by `save_hf`, and what transformers makes of it."""
    tmp_path = tmp_path_factory.mktemp("hf")
    cases = _cases(tmp_path)
    jobs, ours = [], {}
    for name, (model, source) in cases.items():
        folder = save_hf(model, tmp_path / name, metadata_from=source)
        ids = _ids(model)
        ours[name] = keras_logits(model, ids)
        job = {"folder": os.fspath(folder), "ids": ids}
        if source is None and name != "llama-untied":  # one per vocabulary
            job["texts"] = HARD_TEXTS
        jobs.append(job)
    answers, logits = reference.transformers_answers(jobs, tmp_path)
    teachers = {"llama-gqa-tied": tmp_path / "bpe.gguf",
                "llama-sentencepiece": tmp_path / "spm.gguf",
                "gemma3": tmp_path / "gemma.gguf"}
    return {name: dict(answer=answer, theirs=z, ours=ours[name],
                       folder=tmp_path / name, model=cases[name][0],
                       teacher=teachers.get(name))
            for name, answer, z in zip(cases, answers, logits)}


CASES = ["llama-gqa-tied", "llama-untied", "llama-sentencepiece", "gemma3",
         "llama3-rope-llama3", "llama3-rope-linear"]


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
        "full_attention", "sliding_attention"]
    assert gemma["rope_parameters"]["sliding_attention"]["rope_theta"] == 10_000
    assert gemma["rope_parameters"]["full_attention"]["rope_theta"] == 1_000_000
    tied = json.load(open(exported["llama-gqa-tied"]["folder"] / "config.json"))
    assert tied["tie_word_embeddings"] and tied["num_key_value_heads"] == 1
    untied = json.load(open(exported["llama-sentencepiece"]["folder"] /
                            "config.json"))
    assert not untied["tie_word_embeddings"]
    for name in CASES:
        files = sorted(os.listdir(exported[name]["folder"]))
        assert files == sorted(writer.FILES), files


@pytest.mark.parametrize("name", ["llama-gqa-tied", "llama-sentencepiece",
                                  "gemma3"])
def test_auto_tokenizer_gives_llama_cpps_ids(exported, name):
    case = exported[name]
    want = reference.llama_cpp_ids(case["teacher"], HARD_TEXTS)
    answer = case["answer"]
    for index, text in enumerate(HARD_TEXTS):
        # Special tokens in the text read as tokens (transformers' default),
        # and as text (llama.cpp's parse_special=False).
        assert answer["ids"][index] == want[True][index], (name, text)
        assert answer["ids_split_special"][index] == want[False][index], (name, text)
        assert answer["ids_with_specials"][index] == want["with_bos"][index], text


def test_written_from_the_gguf_or_from_the_model_the_tokenizer_is_the_same(
        exported, tmp_path):
    case = exported["gemma3"]
    folder = pathlib.Path(save_hf(case["model"], tmp_path / "copy",
                                  metadata_from=case["teacher"]))
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
        header = json.loads(open(folder / "model.safetensors", "rb").read()[8:][
            : int.from_bytes(open(folder / "model.safetensors", "rb").read(8),
                             "little")])
        assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
            {"float16": "F16", "bfloat16": "BF16"}[dtype]}
        if dtype == "float16":
            half = load_file(folder / "model.safetensors")
            for key, value in full.items():
                np.testing.assert_allclose(half[key], value, rtol=tolerance,
                                           atol=1e-4, err_msg=key)


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
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.merges": merges + ["Ġt h"]}
    with pytest.raises(TokenizerError, match="'Ġth', which is not a token"):
        hf_tokenizer.files(meta, 64)
    model = exported["llama-untied"]["model"]
    with pytest.raises(ValueError, match="no preprocessor with a tokenizer"):
        save_hf(model.backbone, tmp_path / "out")
    with pytest.raises(ValueError, match="is not this model's tokenizer"):
        save_hf(model, tmp_path / "out",
                metadata_from=exported["gemma3"]["teacher"])
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
