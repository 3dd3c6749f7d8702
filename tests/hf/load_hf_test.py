"""The way back, every backend: a Hugging Face folder `save_hf` wrote is a
model wherever a model path is taken (`workflows.inputs.load_model`, hence
every command's TEACHER or MODEL), read by KerasHub's converter with what it
drops put back, and with the tokenizer the folder describes."""

import json
import shutil

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the GGUF reader needs `pip install gguf`")

import keras_hub  # noqa: E402

from keras_guide.gguf import GGUFFile  # noqa: E402
from keras_guide.gguf import save_gguf  # noqa: E402
from keras_guide.hf import reader  # noqa: E402
from keras_guide.workflows import inputs  # noqa: E402
from tests.hf import cases  # noqa: E402

TASKS = {
    "llama-gqa-tied": "Llama3CausalLM",
    "llama-untied": "Llama3CausalLM",
    "llama-sentencepiece": "LlamaCausalLM",
    "gemma3": "Gemma3CausalLM",
    "llama3-rope-llama3": "Llama3CausalLM",
    "llama3-rope-linear": "Llama3CausalLM",
}


def _ids(tokenizer, text):
    return keras.ops.convert_to_numpy(tokenizer(text)).tolist() if text else []


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_written_folder_loads_back_as_the_same_model(exported, name):
    case = exported[name]
    assert reader.is_hf_folder(str(case["folder"]))
    back = inputs.load_model(str(case["folder"]))
    assert type(back).__name__ == TASKS[name]
    ids = cases.ids_of(case["model"])
    # Exactly: the same float32 weights in the same graph (KerasHub's own
    # converter alone reads Llama's epsilon and rope_parameters as defaults).
    np.testing.assert_allclose(
        cases.keras_logits(back, ids), case["ours"], rtol=1e-6, atol=1e-6
    )
    if not hasattr(case["model"], "preprocessor"):
        return
    mine = case["model"].preprocessor.tokenizer
    theirs = back.preprocessor.tokenizer
    assert type(theirs).__name__.startswith("GGUF")
    for text in cases.HARD_TEXTS:
        assert _ids(theirs, text) == _ids(mine, text), (name, text)
    assert back.preprocessor.add_start_token == (
        case["model"].preprocessor.add_start_token
    )


@pytest.mark.parametrize(
    "name, template, chat",
    [
        ("llama-gqa-tied", cases.CHAT_TEMPLATE, cases.CHAT),
        ("gemma3", cases.GEMMA_CHAT_TEMPLATE, cases.GEMMA_CHAT),
    ],
)
def test_the_chat_template_survives_every_format(
    exported, tmp_path, name, template, chat
):
    case = exported[name]
    # GGUF teacher → Keras student → Hugging Face folder, rendered by
    # transformers as the template says.
    config = json.load(open(case["folder"] / "tokenizer_config.json"))
    assert config["chat_template"] == template
    assert case["answer"]["chat"] == chat
    # → GGUF again, from the student's own tokenizer.
    path = save_gguf(case["model"], tmp_path / "student.gguf")
    assert GGUFFile(path).get("tokenizer.chat_template") == template
    # Hugging Face folder → Keras → GGUF.
    back = inputs.load_model(str(case["folder"]))
    path = save_gguf(back, tmp_path / "back.gguf")
    assert GGUFFile(path).get("tokenizer.chat_template") == template


def test_a_tokenizer_json_of_another_origin_is_read_by_kerashub(exported, tmp_path):
    folder = tmp_path / "other"
    shutil.copytree(exported["llama-untied"]["folder"], folder)
    tokenizer_json = json.load(open(folder / "tokenizer.json"))
    tokenizer_json["pre_tokenizer"] = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    json.dump(tokenizer_json, open(folder / "tokenizer.json", "w"))
    back = inputs.load_model(str(folder))
    assert type(back.preprocessor.tokenizer) is keras_hub.models.Llama3Tokenizer
    ids = cases.ids_of(exported["llama-untied"]["model"])
    np.testing.assert_allclose(
        cases.keras_logits(back, ids),
        exported["llama-untied"]["ours"],
        rtol=1e-6,
        atol=1e-6,
    )


def test_a_kerashub_preset_is_not_taken_for_a_hugging_face_folder(exported, tmp_path):
    model = exported["llama-untied"]["model"]
    model.save_to_preset(str(tmp_path / "preset"))
    assert not reader.is_hf_folder(str(tmp_path / "preset"))
    assert not reader.is_hf_folder(str(tmp_path / "absent"))
