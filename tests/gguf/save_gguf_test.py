"""`save_gguf` on tiny models, every backend: what it writes is what
`load_gguf` reads back, in every type, for teachers and guided students; bad
input is refused by name and leaves nothing behind.

`llama_cpp_test.py` runs the written files in llama.cpp itself.
"""

import os

import keras
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the GGUF writer needs `pip install gguf`")

import keras_guide  # noqa: E402
from keras_guide import _files  # noqa: E402
from keras_guide.gguf import GGUFError  # noqa: E402
from keras_guide.gguf import GGUFFile  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.gguf import save_gguf  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402
from tests.harness import gguf_reference as reference  # noqa: E402

Q = gguf.GGMLQuantizationType


def _logits(lm, ids):
    x = {
        "token_ids": np.asarray(ids, "int32")[None],
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    return keras.ops.convert_to_numpy(lm(x)).astype(np.float64)[0]


def _weights(lm):
    return {v.path: keras.ops.convert_to_numpy(v) for v in lm.backbone.weights}


@pytest.mark.parametrize(
    "write",
    [
        lambda p: tiny.write_llama(p, quant=Q.F32),
        lambda p: tiny.write_llama(
            p,
            quant=Q.F32,
            tied=False,
            tokenizer="llama",
            metadata={"tokenizer.ggml.unknown_token_id": 3},
        ),
    ],
    ids=["tied-bpe", "untied-sentencepiece"],
)
def test_llama_round_trip_is_exact(tmp_path, write):
    lm = load_gguf(write(tmp_path / "teacher.gguf"))
    out = save_gguf(lm, tmp_path / "copy.gguf")
    back = load_gguf(out)
    assert type(back) is type(lm)
    for path, value in _weights(lm).items():
        np.testing.assert_array_equal(_weights(back)[path], value, err_msg=path)
    f = GGUFFile(out)
    tied = lm.backbone.token_embedding.tie_weights
    assert f.has_tensor("output.weight") == (not tied)
    assert f.get("llama.rope.dimension_count") == 8
    assert f.get("llama.attention.head_count_kv") == 2


def _student(teacher, **sizes):
    student = keras_guide.build_student(teacher, **sizes)
    keras_guide.guide(teacher, student)
    return student


def test_guided_students_of_every_shape_reload_exactly(tmp_path, llama_gguf):
    teacher = load_gguf(llama_gguf)
    student = _student(
        teacher,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=24,
    )
    back = load_gguf(save_gguf(student, tmp_path / "student.gguf"))
    for path, value in _weights(student).items():
        np.testing.assert_array_equal(_weights(back)[path], value, err_msg=path)
    ids = tiny.token_ids(teacher.backbone.vocabulary_size)
    np.testing.assert_array_equal(_logits(back, ids), _logits(student, ids))


def test_gemma3_round_trip_keeps_every_weight_and_each_norms_one_plus_gain(tmp_path):
    teacher = load_gguf(tiny.write_gemma3(tmp_path / "teacher.gguf", quant=Q.F32))
    # Head width 16 with hidden width 24 and 2 heads: not width / heads.
    student = _student(
        teacher,
        num_layers=6,
        hidden_dim=24,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=40,
    )
    out = save_gguf(student, tmp_path / "student.gguf")
    f = GGUFFile(out)
    assert f.get("gemma3.attention.key_length") == 16
    assert f.get("gemma3.attention.sliding_window") == 3
    assert not f.has_tensor("output.weight")
    back = load_gguf(out)
    for path, value in _weights(student).items():
        got = _weights(back)[path]
        if path.endswith("norm/scale"):
            # The file stores Gemma's `1 + scale`: the gain comes back within
            # one float32 rounding, and the factor the model multiplies by
            # is the same number.
            np.testing.assert_array_equal(
                (got + np.float32(1)).astype(np.float32), value + np.float32(1)
            )
        else:
            np.testing.assert_array_equal(got, value, err_msg=path)
    ids = tiny.token_ids(teacher.backbone.vocabulary_size)
    np.testing.assert_allclose(
        _logits(back, ids), _logits(student, ids), rtol=0, atol=1e-5
    )


def test_gemma3_query_scale_of_62_blocks_is_folded_both_ways(tmp_path):
    # llama.cpp scales a 62-block Gemma 3's queries by 1/√(width / heads)
    # (here 1/√8), KerasHub by 1/√(head width) (1/√16): the ratio lives in
    # the query norm gains, divided out on import and put back on export.
    source = tiny.write_gemma3(tmp_path / "deep.gguf", quant=Q.F32, layers=62, heads=4)
    lm = load_gguf(source)
    ids = tiny.token_ids(lm.backbone.vocabulary_size, seed=3)
    expected = reference.gemma3_logits(str(source), ids)
    error = np.abs(_logits(lm, ids) - expected).max() / np.abs(expected).max()
    assert error < 1e-4, f"import: relative error {error:.3g}"
    out = save_gguf(lm, tmp_path / "copy.gguf")
    original, copy = GGUFFile(source), GGUFFile(out)
    for name in original.tensor_names:
        np.testing.assert_allclose(
            copy.tensor(name), original.tensor(name), rtol=1e-6, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize(
    "dtype, matrix_type", [("float16", Q.F16), ("bfloat16", Q.BF16)]
)
def test_half_precision(tmp_path, dtype, matrix_type):
    lm = load_gguf(tiny.write_llama(tmp_path / "teacher.gguf", quant=Q.F32))
    out = save_gguf(lm, tmp_path / f"{dtype}.gguf", dtype=dtype)
    f = GGUFFile(out)
    assert f.tensor_type("blk.0.attn_q.weight") == matrix_type.name
    assert f.tensor_type("blk.0.attn_norm.weight") == "F32"
    back = load_gguf(out)
    for path, value in _weights(lm).items():
        np.testing.assert_array_equal(
            _weights(back)[path],
            keras.ops.convert_to_numpy(
                keras.ops.cast(keras.ops.cast(value, dtype), "float32")
            )
            if value.ndim > 1
            else value,
            err_msg=path,
        )


@pytest.mark.parametrize("dtype, kind", [("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0)])
def test_quantized_types_hold_ggmls_own_quantization(tmp_path, dtype, kind):
    lm = load_gguf(tiny.write_llama(tmp_path / "teacher.gguf", quant=Q.F32))
    out = save_gguf(lm, tmp_path / f"{dtype}.gguf", dtype=dtype)
    f, plain = GGUFFile(out), GGUFFile(save_gguf(lm, tmp_path / "f32.gguf"))
    assert f.get("general.file_type") == int(
        getattr(gguf.LlamaFileType, "MOSTLY_" + kind.name)
    )
    for name in plain.tensor_names:
        value = plain.tensor(name)
        if value.ndim == 1:
            assert f.tensor_type(name) == "F32"
            np.testing.assert_array_equal(f.tensor(name), value)
        else:
            assert f.tensor_type(name) == kind.name, name
            expected = gguf.quants.dequantize(gguf.quants.quantize(value, kind), kind)
            np.testing.assert_array_equal(f.tensor(name), expected, err_msg=name)


def test_metadata_from_copies_the_teachers_tokenizer_keys_verbatim(tmp_path):
    source = tiny.write_llama(
        tmp_path / "teacher.gguf",
        metadata={
            "tokenizer.chat_template": "{{ messages }}",
            "llama.context_length": 321,
        },
    )
    teacher = load_gguf(source)
    out = save_gguf(teacher.backbone, tmp_path / "copy.gguf", metadata_from=source)
    original, copy = GGUFFile(source), GGUFFile(out)
    keys = [k for k in original.keys() if k.startswith("tokenizer.")]
    assert "tokenizer.chat_template" in keys
    for key in keys:
        assert copy.get(key) == original.get(key), key
        assert copy.value_types(key) == original.value_types(key), key
    assert copy.get("llama.context_length") == 321


def test_bad_input_is_refused_by_name_and_leaves_no_file(tmp_path, llama_gguf):
    source = llama_gguf
    lm = load_gguf(source)
    out = tmp_path / "student.gguf"
    with pytest.raises(GGUFError, match="`.*teacher.gguf` is `metadata_from` itself"):
        save_gguf(lm, source, metadata_from=source, overwrite=True)
    out.write_bytes(b"keep me")
    with pytest.raises(GGUFError, match="exists; pass overwrite=True"):
        save_gguf(lm, out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(GGUFError, match="ends in `.gguf`"):
        save_gguf(lm, tmp_path / "student.bin")
    with pytest.raises(ValueError, match="dtype must be one of"):
        save_gguf(lm, tmp_path / "x.gguf", dtype="int4")
    with pytest.raises(GGUFError, match="no preprocessor with a tokenizer"):
        save_gguf(lm.backbone, tmp_path / "x.gguf")
    other = tiny.write_gemma3(tmp_path / "gemma.gguf")
    with pytest.raises(GGUFError, match="tokens but the model's table"):
        save_gguf(lm, tmp_path / "x.gguf", metadata_from=other)
    lm.backbone.token_embedding.embeddings.assign(
        np.full(lm.backbone.token_embedding.embeddings.shape, 7e4, "float32")
    )
    with pytest.raises(GGUFError, match="beyond float16's 65504: write it with"):
        save_gguf(lm, tmp_path / "x.gguf", dtype="float16")
    lm.backbone.token_embedding.embeddings.assign(
        np.full(lm.backbone.token_embedding.embeddings.shape, np.nan, "float32")
    )
    with pytest.raises(GGUFError, match="token_embedding/embeddings` holds NaN"):
        save_gguf(lm, tmp_path / "x.gguf")
    assert sorted(os.listdir(tmp_path)) == [
        "gemma.gguf",
        "student.gguf",
        "teacher.gguf",
    ]
    assert not [n for n in os.listdir(tmp_path) if _files.is_temporary(n)]


def test_unsupported_family_names_the_alternative(tmp_path):
    from keras_guide.demo import models

    with pytest.raises(GGUFError, match="GPT2Backbone.*save_to_preset"):
        save_gguf(models.load_teacher(), tmp_path / "gpt2.gguf")
    assert not os.listdir(tmp_path)


def test_unwritable_folder_leaves_nothing(tmp_path, llama_gguf):
    lm = load_gguf(llama_gguf)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(OSError):
            save_gguf(lm, folder / "student.gguf")
    finally:
        folder.chmod(0o700)
    assert not os.listdir(folder)
