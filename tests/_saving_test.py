"""Files that load: `import keras_guide` alone registers every class its
files name (lightly), the chat template and special tokens survive every
format, and where keras_guide is missing the file and the error say what to
install. Each load runs in a fresh process, as a user's would.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import keras
import keras_hub
import numpy as np
import pytest

import keras_guide
from keras_guide import _saving
from keras_guide.gguf import GGUFFile
from keras_guide.gguf import load_gguf
from keras_guide.gguf import save_gguf
from keras_guide.workflows import export
from tests.gguf.llama_cpp_test import TEXTS
from tests.harness import gguf_files as tiny

PACKAGE = pathlib.Path(keras_guide.__file__).parent
CHAT = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"


def _run(code):
    """`code` in a fresh Python process; its last stdout line, parsed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _registered_classes():
    """`keras_guide>Name` for every class the package's source registers."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                "register_keras_serializable" in ast.unparse(d)
                and "keras_guide" in ast.unparse(d)
                for d in node.decorator_list
            ):
                names.add(f"keras_guide>{node.name}")
    return names


def test_import_keras_guide_registers_every_class_and_stays_light():
    names = _registered_classes()
    assert "keras_guide>GGUFBytePairTokenizer" in names  # the scan finds them
    seen = _run(
        "import json, sys, keras, keras_guide\n"
        "print(json.dumps({'registered': sorted(k for k in "
        "keras.saving.get_custom_objects() if k.startswith('keras_guide>')), "
        "'modules': sorted(sys.modules)}))"
    )
    assert names <= set(seen["registered"]), names - set(seen["registered"])
    heavy = {"keras_hub", "torch", "tensorflow", "keras_guide.gguf.tokenizers"}
    heavy.discard(keras.backend.backend())  # Keras imports its own backend
    assert not heavy & set(seen["modules"]), heavy & set(seen["modules"])
    # Each deferred entry names the module that defines its class.
    for name in _saving.DEFERRED:
        cls = _saving._Deferred(name, _saving.DEFERRED[name]).load()
        assert isinstance(cls, type) and f"keras_guide>{cls.__name__}" == name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Llama (byte-level BPE) and Gemma 3 (SentencePiece) with a chat
    template, each as GGUF, `.keras` and preset; and a GPT-2 with KerasHub's
    own tokenizer as `.keras` and preset. With what each must reload to."""
    tmp = tmp_path_factory.mktemp("files")
    out = {}
    teachers = {
        "llama": tiny.write_llama(
            tmp / "llama-teacher.gguf", metadata={"tokenizer.chat_template": CHAT}
        ),
        "gemma3": tiny.write_gemma3(
            tmp / "gemma3-teacher.gguf", strings={"tokenizer.chat_template": CHAT}
        ),
    }
    for family, path in teachers.items():
        lm = load_gguf(path)
        tokenizer = lm.preprocessor.tokenizer
        written = export.export(lm, str(tmp / family), ["gguf", "preset", "keras"])
        out[family] = {
            "files": written,
            "ids": [np.asarray(tokenizer.tokenize(t)).tolist() for t in TEXTS],
            "special": [tokenizer.start_token_id, tokenizer.end_token_id],
            "teacher": str(path),
        }
    vocabulary = {"<|endoftext|>": 0, "Ġ": 1, "a": 2, "b": 3, "Ġa": 4, "ab": 5}
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=["Ġ a", "a b"]
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=6,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )
    gpt2 = keras_hub.models.GPT2CausalLM(
        backbone=backbone,
        preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(tokenizer),
    )
    out["gpt2"] = {
        "files": export.export(gpt2, str(tmp / "gpt2"), ["preset", "keras"]),
        "ids": [np.asarray(tokenizer.tokenize("a ab b")).tolist()],
    }
    return out


_LOAD = """
import json, sys, keras, keras_hub
{imports}
files, texts = {files!r}, {texts!r}
out = {{}}
for family, paths in files.items():
    for kind in ("keras", "preset"):
        try:
            lm = (keras.saving.load_model(paths[kind]) if kind == "keras" else
                  keras_hub.models.CausalLM.from_preset(paths[kind]))
        except Exception as error:
            out[family + "/" + kind] = {{"error": str(error)}}
            continue
        t = lm.preprocessor.tokenizer
        out[family + "/" + kind] = {{
            "class": type(t).__name__,
            "ids": [[int(i) for i in t.tokenize(s)] for s in texts[family]],
            "special": [t.start_token_id, t.end_token_id],
            "chat": getattr(t, "gguf_settings", {{}}).get("tokenizer.chat_template"),
        }}
out["imported"] = "keras_guide" in sys.modules
print(json.dumps(out))
"""


def _load_all(files, imports):
    paths = {f: {k: files[f]["files"][k] for k in ("keras", "preset")} for f in files}
    texts = {f: TEXTS if f != "gpt2" else ["a ab b"] for f in files}
    return _run(_LOAD.format(imports=imports, files=paths, texts=texts))


@pytest.mark.slow
def test_every_format_keeps_the_tokenizer_chat_template_and_special_tokens(files):
    loaded = _load_all({f: files[f] for f in ("llama", "gemma3")}, "import keras_guide")
    for family in ("llama", "gemma3"):
        expected = files[family]
        for kind in ("keras", "preset"):
            got = loaded[f"{family}/{kind}"]
            assert "error" not in got, got
            assert got["class"].startswith("GGUF"), got["class"]
            assert got["ids"] == expected["ids"], (family, kind)
            assert got["special"] == expected["special"], (family, kind)
            assert got["chat"] == CHAT, (family, kind)
        gguf = GGUFFile(expected["files"]["gguf"])
        teacher = GGUFFile(expected["teacher"])
        for key in (
            "tokenizer.chat_template",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
        ):
            assert gguf.get(key) == teacher.get(key), (family, key)
        # And on through a GGUF file written from the reloaded model.
        again = load_gguf(expected["files"]["gguf"])
        copy = save_gguf(again, expected["files"]["gguf"][:-5] + "-copy.gguf")
        assert GGUFFile(copy).get("tokenizer.chat_template") == CHAT


@pytest.mark.slow
def test_files_name_the_package_where_it_is_missing(files):
    for family in ("llama", "gemma3"):
        paths = files[family]["files"]
        with zipfile.ZipFile(paths["keras"]) as archive:
            note = json.loads(archive.read("metadata.json"))["keras_guide"]
        assert note["requires"] == _saving.REQUIRES
        assert note["classes"] and note["load"].startswith("import keras_guide")
        with open(os.path.join(paths["preset"], "metadata.json")) as f:
            assert json.load(f)["keras_guide"]["requires"] == _saving.REQUIRES
    paths = files["gpt2"]["files"]
    with zipfile.ZipFile(paths["keras"]) as archive:
        assert "keras_guide" not in json.loads(archive.read("metadata.json"))
    loaded = _load_all(files, "")
    assert loaded["imported"] is False
    for family in ("llama", "gemma3"):
        for kind in ("keras", "preset"):
            message = loaded[f"{family}/{kind}"]["error"]
            assert "pip install keras-guide" in message
            assert "import keras_guide" in message
            # Keras' message ends with the tokenizer's config, ours last.
            assert "pip install keras-guide" in message[-400:], message[-400:]
    # KerasHub's own tokenizer: nothing of keras_guide's is needed.
    for kind in ("keras", "preset"):
        got = loaded[f"gpt2/{kind}"]
        assert got["class"] == "GPT2Tokenizer", got
        assert got["ids"] == files["gpt2"]["ids"]


def test_a_deferred_class_builds_the_real_object():
    entry = keras.saving.get_custom_objects()["keras_guide>GGUFLlamaTokenizer"]
    cls = entry if isinstance(entry, type) else entry.load()
    assert keras.saving.get_custom_objects()["keras_guide>GGUFLlamaTokenizer"] is cls
    deferred = _saving._Deferred(
        "keras_guide>NoSuchClass", "keras_guide.gguf.tokenizers"
    )
    with pytest.raises(KeyError):
        deferred.load()
