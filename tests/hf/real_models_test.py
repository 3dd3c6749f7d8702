"""`AutoTokenizer` on the real checkpoints' vocabularies (SmolLM2's byte-level
BPE with its digit-splitting pre-tokenizer, Gemma 3's 262,144 SentencePiece
pieces with user-defined whitespace and markup tokens) gives llama.cpp's ids
on the hard texts. JAX only, like `tests/gguf/`'s real-checkpoint tests: the
files are backend-independent and the tiny vocabularies cover every backend.

`benchmarks/hf_parity.py` runs quarter-size students of both through
`transformers`.
"""

import json
import os

import keras
import pytest

pytest.importorskip("gguf", reason="the GGUF reader needs `pip install gguf`")

from keras_guide import checkpoints  # noqa: E402
from keras_guide.gguf import GGUFFile  # noqa: E402
from keras_guide.hf import tokenizer as hf_tokenizer  # noqa: E402
from tests.harness import checkpoints as real_checkpoints  # noqa: E402
from tests.hf import cases  # noqa: E402
from tests.hf import reference  # noqa: E402

TEXTS = cases.HARD_TEXTS + [
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    checkpoints.PARAGRAPH,
]


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="real checkpoints run on JAX only, to keep CI in time",
)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_real_vocabularies_give_llama_cpps_ids(tmp_path, name):
    path = real_checkpoints.path(name)
    f = GGUFFile(path)
    meta = {key: f.get(key) for key in f.keys() if key.startswith("tokenizer.")}
    tokenizer_json, config, ids = hf_tokenizer.files(meta, 8192)
    folder = tmp_path / name
    folder.mkdir()
    for file, document in (
        ("tokenizer.json", tokenizer_json),
        ("tokenizer_config.json", config),
    ):
        with open(folder / file, "w", encoding="utf-8") as out:
            json.dump(document, out, ensure_ascii=False)
    (answer,), _ = reference.transformers_answers(
        [{"folder": os.fspath(folder), "texts": TEXTS}], tmp_path
    )
    want = reference.llama_cpp_ids(path, TEXTS)
    for index, text in enumerate(TEXTS):
        assert answer["ids"][index] == want[True][index], (name, text)
        assert answer["ids_split_special"][index] == want[False][index], (name, text)
        assert answer["ids_with_specials"][index] == want["with_bos"][index], (
            name,
            text,
        )
    # Generation stops at the end of a turn too (<|im_end|> is SmolLM2's end
    # token, <|endoftext|> its end of text; Gemma's <eos> and <end_of_turn>),
    # all tokens llama.cpp ends generation at.
    assert ids["stop_token_ids"] == {"smollm2": [2, 0], "gemma3": [1, 106]}[name]
    assert set(ids["stop_token_ids"]) <= set(want["eog"])
