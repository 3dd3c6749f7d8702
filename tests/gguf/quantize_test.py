"""K-quants through llama.cpp's own quantizer (`quantize_gguf`, `save_gguf`
with a llama.cpp type), checked by llama.cpp itself and the `gguf` package.

Tiny Llama-family and Gemma 3 students 256 wide (whole K-quant blocks, so no
fallback) are written in several types: each file holds the tensor types its
type promises (read with `gguf.GGUFReader`, not our reader) and runs in
llama.cpp with logits close to the float32 file's, closer the more bits. A
32-wide model gets llama.cpp's 32-wide fallback types, as the docstrings say.
Bad input is refused in one line before anything is written.
"""

import collections
import os

import keras
import llama_cpp  # noqa: F401 (fails, rather than skips, where it is missing)
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide.gguf import GGUFError  # noqa: E402
from keras_guide.gguf import dtypes  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.gguf import quantize_gguf  # noqa: E402
from keras_guide.gguf import runtime  # noqa: E402
from keras_guide.gguf import save_gguf  # noqa: E402
from keras_guide.workflows import export  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402

# Types a matrix may take besides the named type's own, in llama.cpp's mixes
# without an importance matrix (the tied embedding/output head takes Q6_K).
MORE_BITS = {
    "q6_k": set(),
    "q5_k_m": {"Q6_K"},
    "q4_k_m": {"Q6_K"},
    "q3_k_m": {"Q4_K", "Q5_K", "Q6_K"},
    "q2_k": {"Q3_K", "Q4_K", "Q6_K"},
}
# Mean KL(float32 file ‖ quantized file) in llama.cpp, nats per token, on
# these random 256-wide models: about twice the most measured on two token
# draws (q6_k 3.1e-3 / 1.0e-3, q5_k_m 7.8e-3 / 2.3e-3, q4_k_m 2.3e-2 /
# 9.5e-3, q3_k_m 5.7e-2 / 2.2e-2, q2_k 0.25 / 0.077 for Llama / Gemma 3;
# unit-scale random weights are far more sensitive to rounding than trained
# ones, see benchmarks/gguf_types.py for a trained student).
KL_BOUNDS = {"q6_k": 7e-3, "q5_k_m": 0.016, "q4_k_m": 0.05, "q3_k_m": 0.12, "q2_k": 0.5}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The tiny Llama (32 wide, tied, byte-level BPE) and Gemma 3 models."""
    tmp = tmp_path_factory.mktemp("small")
    return {
        "llama": load_gguf(tiny.write_llama(tmp / "llama.gguf")),
        "gemma3": load_gguf(tiny.write_gemma3(tmp / "gemma3.gguf", layers=2)),
    }


def _wide(small, **sizes):
    """`small` made 256 wide, with random weights of unit scale (its logits
    far from uniform, so rounding shows)."""
    config = {**small.backbone.get_config(), **sizes}
    backbone = type(small.backbone).from_config(config)
    rng = np.random.default_rng(0)
    for v in backbone.weights:
        shape = tuple(v.shape)
        if len(shape) == 1:
            value = 0.3 * rng.normal(size=shape)  # Gemma stores 1 + scale
            if "gemma" not in type(backbone).__name__.lower():
                value += 1.0
        else:
            value = rng.normal(size=shape) / np.sqrt(
                shape[0] if len(shape) == 2 else np.prod(shape[:-1])
            )
        v.assign(value.astype("float32"))
    return type(small)(backbone=backbone, preprocessor=small.preprocessor)


@pytest.fixture(scope="module")
def students(small):
    return {
        "llama": _wide(small["llama"], hidden_dim=256, intermediate_dim=512),
        "gemma3": _wide(
            small["gemma3"], hidden_dim=256, intermediate_dim=512, head_dim=128
        ),
    }


def _types(path):
    reader = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, len(t.shape)) for t in reader.tensors}


def _file_type(path):
    field = gguf.GGUFReader(str(path)).fields["general.file_type"]
    return int(field.parts[-1][0])


def _kl(p_logits, q_logits):
    def log_softmax(z):
        z = np.asarray(z, np.float64)
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())


def test_the_type_table_agrees_with_gguf_and_llama_cpp():
    for kind in dtypes.TYPES.values():
        tensor_type = gguf.GGMLQuantizationType[kind.tensor_type]
        block, size = gguf.GGML_QUANT_SIZES[tensor_type]
        assert block == kind.block, kind
        assert size * 8 / block == kind.bits, kind
        assert kind.producer in ("gguf", "llama.cpp")
    # llama.cpp's file-type numbers, read in a process of its own.
    names = [kind.file_type for kind in dtypes.TYPES.values()]
    script = (
        "import sys, llama_cpp\n"
        "print(*[getattr(llama_cpp, 'LLAMA_FTYPE_' + n) for n in sys.argv[1:]])"
    )
    done = runtime._run_child("llama_cpp", script, names)
    numbers = [int(n) for n in done.stdout.split()]
    assert numbers == [int(gguf.LlamaFileType[n]) for n in names]
    assert set(dtypes.LLAMA_CPP_DTYPES) >= set(MORE_BITS)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_k_quants_hold_their_types_and_run_close_to_float32(students, family, tmp_path):
    lm = students[family]
    ids = tiny.token_ids(lm.backbone.vocabulary_size, length=48)
    reference = save_gguf(lm, tmp_path / "float32.gguf")
    expected = runtime.logits(reference, [ids])[0]
    kls = {}
    for dtype, more in MORE_BITS.items():
        kind = dtypes.TYPES[dtype]
        if dtype == "q4_k_m":  # the whole path: Keras model → quantized file
            out = save_gguf(lm, tmp_path / f"{dtype}.gguf", dtype=dtype)
        else:
            out = quantize_gguf(reference, tmp_path / f"{dtype}.gguf", dtype)
        assert _file_type(out) == int(gguf.LlamaFileType[kind.file_type])
        types = _types(out)
        assert {t for t, rank in types.values() if rank == 1} == {"F32"}
        matrices = {n: t for n, (t, rank) in types.items() if rank == 2}
        assert set(matrices.values()) <= {kind.tensor_type} | more, (dtype, matrices)
        blocks = collections.Counter(
            t for n, t in matrices.items() if n.startswith("blk.")
        )
        assert blocks.most_common(1)[0][0] == kind.tensor_type, (dtype, blocks)
        kls[dtype] = _kl(expected, runtime.logits(out, [ids])[0])
        assert kls[dtype] < KL_BOUNDS[dtype], (family, dtype, kls)
    # Fewer bits, further from float32 (a mixed-up type would break the order;
    # each step at least doubled the KL where measured).
    assert list(kls) == sorted(kls, key=kls.get), kls
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".keras-guide")]


def test_rows_not_in_whole_k_blocks_take_llama_cpps_32_wide_fallback(tmp_path, small):
    lm = small["llama"]  # 32 wide, MLP 64: no row is 256 long
    source = save_gguf(lm, tmp_path / "float32.gguf")
    fallback = {
        "Q6_K": "Q8_0",
        "Q5_K": "Q5_1",
        "Q4_K": "Q5_0",
        "Q3_K": "Q4_0",
        "Q2_K": "Q4_0",
    }
    for dtype, more in MORE_BITS.items():
        own = fallback[dtypes.TYPES[dtype].tensor_type]
        types = _types(quantize_gguf(source, tmp_path / f"{dtype}.gguf", dtype))
        blocks = collections.Counter(
            t for n, (t, rank) in types.items() if n.startswith("blk.") and rank == 2
        )
        assert set(blocks) <= {own} | {fallback[t] for t in more}, (dtype, blocks)
        assert blocks.most_common(1)[0][0] == own, (dtype, blocks)
        # The tied embedding is the output head: llama.cpp gives it Q8_0.
        assert types["token_embd.weight"][0] == "Q8_0"


def test_bad_input_is_refused_before_anything_is_written(tmp_path, small, monkeypatch):
    lm = small["llama"]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        ValueError,
        match=r"dtype must be one of .*q4_k_m.* "
        r"Received: dtype='q4_k'",
    ):
        save_gguf(lm, out / "s.gguf", dtype="q4_k")
    quantized = save_gguf(lm, tmp_path / "q8_0.gguf", dtype="q8_0")
    with pytest.raises(
        GGUFError, match="holds Q8_0 tensors; llama.cpp quantizes float files only"
    ):
        quantize_gguf(quantized, out / "s.gguf", "q4_k_m")
    source = save_gguf(lm, tmp_path / "float32.gguf")
    with pytest.raises(GGUFError, match="is `source` itself"):
        quantize_gguf(source, source, "q4_k_m", overwrite=True)
    with pytest.raises(ValueError, match="Received: dtype='float32'"):
        quantize_gguf(source, out / "s.gguf", "float32")
    # A file llama.cpp cannot load: its message, and nothing left behind.
    writer = gguf.GGUFWriter(str(tmp_path / "alien.gguf"), "no-such-arch")
    writer.add_tensor("w.weight", np.ones((4, 256), np.float32))
    tiny._finish(writer)
    with pytest.raises(RuntimeError, match="llama.cpp could not run .*alien.gguf"):
        quantize_gguf(tmp_path / "alien.gguf", out / "s.gguf", "q4_k_m")
    monkeypatch.setattr(runtime, "available", lambda: False)
    with pytest.raises(ImportError, match="pip install llama-cpp-python"):
        save_gguf(lm, out / "s.gguf", dtype="q4_k_m")
    with pytest.raises(ImportError, match="pip install llama-cpp-python"):
        export.export(lm, str(out / "student"), ["gguf"], gguf_dtype=["q8_0", "q4_k_m"])
    assert os.listdir(out) == []


def test_export_writes_one_file_per_type(tmp_path, small):
    lm = small["llama"]
    base = str(tmp_path / "student")
    with pytest.raises(ValueError, match="Received: gguf_dtype=.*'q4_k'"):
        export.export(lm, base, ["gguf"], gguf_dtype=["q8_0", "q4_k"])
    with pytest.raises(ValueError, match="twice"):
        export.export(lm, base, ["gguf"], gguf_dtype=["q8_0", "q8_0"])
    assert os.listdir(tmp_path) == []
    written = export.export(
        lm, base, ["gguf", "keras"], gguf_dtype=["q8_0", "float32", "q4_k_m", "q6_k"]
    )
    assert written == {
        "gguf": base + ".gguf",
        "gguf.float32": base + ".float32.gguf",
        "gguf.q4_k_m": base + ".q4_k_m.gguf",
        "gguf.q6_k": base + ".q6_k.gguf",
        "keras": base + ".keras",
    }
    assert written == export.paths(
        base, ["gguf", "keras"], ["q8_0", "float32", "q4_k_m", "q6_k"]
    )
    assert _file_type(written["gguf"]) == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert _file_type(written["gguf.q4_k_m"]) == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    ids = tiny.token_ids(lm.backbone.vocabulary_size)
    keras_logits = keras.ops.convert_to_numpy(
        lm(
            {
                "token_ids": np.asarray(ids, "int32")[None],
                "padding_mask": np.ones((1, len(ids)), "int32"),
            }
        )
    )[0]
    float_logits = runtime.logits(written["gguf.float32"], [ids])[0]
    assert _kl(keras_logits, float_logits) < 1e-4
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".keras-guide")]
    assert leftovers == []
