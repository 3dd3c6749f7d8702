"""32 greedy tokens from one prompt, every backend: Keras (KerasHub's
`generate`, greedy sampler), llama.cpp (the student's float32 GGUF from
`save_gguf`, in a child process, float32 key/value cache) and `transformers`
(the student's Hugging Face folder, float32) each tokenize the prompt
themselves and continue it the same way.

The student (`cases.GENERATOR`) is a float32 guided student whose greedy path
is not degenerate; the test checks that, and that every step's choice wins
by a margin far above float32 round-off (a near-tie could flip between
runtimes that add in different orders, which would say nothing about the
files).
"""

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the GGUF writer needs `pip install gguf`")

from keras_guide.gguf import save_gguf  # noqa: E402
from tests.hf import cases  # noqa: E402
from tests.hf import reference  # noqa: E402


def _keras_greedy(model, prompt, steps):
    """KerasHub's greedy `generate` from `prompt`'s ids, no stop token."""
    preprocessor = model.preprocessor
    ids = [int(i) for i in np.asarray(preprocessor.tokenizer(prompt))]
    if preprocessor.add_start_token:
        ids = [preprocessor.tokenizer.start_token_id] + ids
    model.compile(sampler="greedy")
    x = {
        "token_ids": np.asarray([ids + [0] * steps], "int32"),
        "padding_mask": np.asarray([[1] * len(ids) + [0] * steps], "int32"),
    }
    # Token ids in, token ids out: the preprocessor steps aside meanwhile.
    model.preprocessor = None
    try:
        out = model.generate(x, stop_token_ids=None)
    finally:
        model.preprocessor = preprocessor
    return ids, [int(i) for i in np.asarray(out["token_ids"])[0, len(ids) :]]


def test_keras_llama_cpp_and_transformers_generate_the_same_tokens(exported, tmp_path):
    case = exported[cases.GENERATOR]
    model = case["model"]
    prompt_ids, generated = _keras_greedy(model, cases.PROMPT, cases.STEPS)
    assert len(generated) == cases.STEPS
    # Not degenerate, and no near-tie along the path.
    assert len(set(generated)) >= cases.STEPS // 2, generated
    z = cases.keras_logits(model, prompt_ids + generated)[len(prompt_ids) - 1 : -1]
    assert (z.argmax(-1) == generated).all()
    top = np.sort(z, -1)
    assert (top[:, -1] - top[:, -2]).min() > 1e-3
    llama_cpp = reference.llama_cpp_greedy(
        save_gguf(model, tmp_path / "student.gguf"), cases.PROMPT, cases.STEPS
    )
    transformers = case["answer"]
    assert llama_cpp["prompt_ids"] == transformers["prompt_ids"] == prompt_ids
    assert llama_cpp["generated"] == generated
    assert transformers["generated"] == generated
