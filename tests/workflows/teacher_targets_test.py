"""Teacher targets stored on disk by llama.cpp (`--targets-from llama.cpp`):
the same top-k logits, ids and log-normalizers as the Keras teacher's
`teacher_top_k`, a resume that scores only the windows not yet stored, and
the refusals (nothing lost)."""

import json

import llama_cpp  # noqa: F401 (fails, rather than skips, where it is missing)
import numpy as np
import pytest

from keras_guide.distillation import teacher_top_k
from keras_guide.gguf import load_gguf
from keras_guide.gguf import runtime
from keras_guide.gguf import save_gguf
from keras_guide.workflows import checkpoint
from keras_guide.workflows import distill
from keras_guide.workflows import teacher_targets
from keras_guide.workflows import text
from tests.harness import gguf_files as tiny

LENGTH = 12  # tokens a window feeds the model


def _windows(rows, seed, vocabulary):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocabulary, (rows, LENGTH + 1)).astype("int32")
    mask = np.ones_like(tokens)
    mask[::3, -5:] = 0  # some padded windows
    return tokens * mask, mask


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny float32 Llama as llama.cpp loads it (through `save_gguf`)."""
    folder = tmp_path_factory.mktemp("t")
    source = tiny.write_llama(folder / "source.gguf", quant=tiny.Q.F32)
    path = save_gguf(load_gguf(source), folder / "teacher.gguf", metadata_from=source)
    return str(path), load_gguf(path)


def _student(tmp_path):
    return load_gguf(
        tiny.write_llama(tmp_path / "student.gguf", quant=tiny.Q.F32, seed=1)
    )


def _count_logits(monkeypatch, fail_after=None):
    """Counts llama.cpp's window evaluations; raises after `fail_after`."""
    calls = []
    original = runtime.Session.logits

    def logits(self, tokens, first=0):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt("killed")
        calls.append(len(tokens))
        return original(self, tokens, first)

    monkeypatch.setattr(runtime.Session, "logits", logits)
    return calls


def test_llama_cpp_targets_are_the_keras_teachers_top_k(teacher, tmp_path, monkeypatch):
    path, lm = teacher
    vocabulary = lm.backbone.vocabulary_size
    tokens, mask = _windows(10, 0, vocabulary)
    batches = text.Batches(tokens, mask, batch_size=4, seed=0)
    calls = _count_logits(monkeypatch)
    stored = teacher_targets.DiskTargets(
        batches,
        teacher_targets.LlamaCppScorer(path, LENGTH, threads=1),
        str(tmp_path / teacher_targets.FOLDER),
        6,
        2.0,
        2,
        "llama.cpp",
        "t",
        "d",
    )
    # Two steps of 4 windows: 8 of the 10 windows are used, and scored.
    assert stored.fill() == 8 and len(stored.order) == 8
    # One llama.cpp evaluation per window, of its real tokens only.
    assert sorted(calls) == sorted(int(m[:-1].sum()) for m in mask[stored.order])
    assert mask[stored.order, -2].min() == 0  # padded windows among them
    for step in range(2):
        x, y, weight = stored.batch(step)
        want_x, want_y, want_weight = batches.batch(step)
        np.testing.assert_array_equal(y["labels"], want_y)
        np.testing.assert_array_equal(weight, want_weight)
        want = teacher_top_k(lm, want_x, 6, temperature=2.0)
        real = weight > 0
        np.testing.assert_array_equal(
            y["teacher_top_k_indices"][real], want["teacher_top_k_indices"][real]
        )
        for key in ("teacher_top_k_logits", "teacher_log_normalizer"):
            np.testing.assert_allclose(y[key][real], want[key][real], atol=1e-4)
        # Against llama.cpp's own logits of each window (the high-level API,
        # another process), top-k and log-normalizer in float64 here.
        rows = batches.rows(step)
        reference = runtime.logits(
            path,
            [t[: int(m[:-1].sum())] for t, m in zip(tokens[rows], mask[rows])],
            kv_float32=True,
        )
        for i, z in enumerate(reference):
            z = z.astype(np.float64)
            ids = np.argsort(-z, axis=-1, kind="stable")[:, :6]
            n = len(z)
            np.testing.assert_array_equal(y["teacher_top_k_indices"][i, :n], ids)
            np.testing.assert_allclose(
                y["teacher_top_k_logits"][i, :n],
                np.take_along_axis(z, ids, -1),
                atol=1e-6,
            )
            log_z = np.log(np.exp(z / 2.0 - (z / 2.0).max(-1, keepdims=True)).sum(-1))
            np.testing.assert_allclose(
                y["teacher_log_normalizer"][i, :n], log_z + (z / 2.0).max(-1), atol=1e-5
            )
            # Padded positions repeat the last real token's targets.
            np.testing.assert_array_equal(
                y["teacher_top_k_indices"][i, n:],
                np.broadcast_to(ids[-1], (LENGTH - n, 6)),
            )
        np.testing.assert_array_equal(y["teacher_temperature"], 2.0)
    # Read from the files, not held in memory.
    assert isinstance(stored._arrays["teacher_top_k_logits"], np.memmap)
    manifest = json.loads(
        (tmp_path / teacher_targets.FOLDER / teacher_targets.MANIFEST).read_text()
    )
    assert manifest["stored"] == 8 and manifest["digest"]["top_k"] == 6


def test_the_keras_teachers_targets_on_disk_are_those_kept_in_memory(tmp_path):
    from tests.harness import models

    teacher = models.gpt2(seed=1)
    tokens, mask = _windows(12, 2, models.VOCAB)
    tokens, mask = tokens[:, : models.SEQ + 1], mask[:, : models.SEQ + 1]
    batches = text.Batches(tokens, mask, batch_size=4, seed=0)
    on_disk = teacher_targets.DiskTargets(
        batches,
        teacher_targets.KerasScorer(teacher, batch_size=4),
        str(tmp_path / teacher_targets.FOLDER),
        5,
        2.0,
        6,
        "keras",
        "t",
        "d",
    )
    assert on_disk.fill() == 12
    in_memory = distill.StoredTeacherBatches(batches, teacher, 5, 2.0, 6)
    for step in range(6):
        _, y, _ = on_disk.batch(step)
        _, want, _ = in_memory.batch(step)
        assert sorted(y) == sorted(want)
        for key, value in want.items():
            np.testing.assert_allclose(y[key], value, rtol=1e-6, atol=1e-6)


def _run(teacher, student, out, resume=False, top_k=5, **kwargs):
    path, lm = teacher
    vocabulary = lm.backbone.vocabulary_size
    windows = (_windows(12, 0, vocabulary), _windows(4, 1, vocabulary))
    return distill.distill(
        lm,
        student,
        windows,
        str(out),
        num_steps=3,
        batch_size=4,
        learning_rate=1e-2,
        checkpoint_every=3,
        verbose=False,
        resume=resume,
        kd_options={"temperature": 1.0, "top_k": top_k, "targets_from": "llama.cpp"},
        teacher_path=path,
        **kwargs,
    )


def test_a_resume_scores_only_the_windows_not_yet_stored(
    teacher, tmp_path, monkeypatch
):
    monkeypatch.setattr(teacher_targets, "CHUNK", 4)
    # Killed while scoring the second chunk: the first is on disk.
    _count_logits(monkeypatch, fail_after=6)
    with pytest.raises(KeyboardInterrupt):
        _run(teacher, _student(tmp_path), tmp_path / "run")
    folder = tmp_path / "run" / teacher_targets.FOLDER
    assert json.loads((folder / teacher_targets.MANIFEST).read_text())["stored"] == 4
    monkeypatch.undo()
    monkeypatch.setattr(teacher_targets, "CHUNK", 4)
    calls = _count_logits(monkeypatch)
    result = _run(teacher, _student(tmp_path), tmp_path / "run", resume=True)
    # 12 windows used in 3 steps of 4; the 4 stored are not scored again.
    assert len(calls) == result["teacher_windows_scored"] == 8
    resumed = {
        name: np.load(folder / f"{name}.npy")
        for name in ("logits", "indices", "log_normalizer")
    }
    # The same files as a run never stopped, and the same student.
    calls.clear()
    whole = _run(teacher, _student(tmp_path), tmp_path / "whole")
    assert len(calls) == 12
    for name, value in resumed.items():
        np.testing.assert_array_equal(
            value, np.load(tmp_path / "whole" / teacher_targets.FOLDER / f"{name}.npy")
        )
    np.testing.assert_allclose(
        result["held_out_loss"], whole["held_out_loss"], rtol=1e-6
    )
    assert np.isfinite(whole["held_out_loss"])
    settings = json.loads((tmp_path / "whole" / distill.RESULT_FILE).read_text())[
        "settings"
    ]
    assert settings["targets_from"] == "llama.cpp"


def test_the_refusals_name_the_problem_and_lose_nothing(teacher, tmp_path, monkeypatch):
    path, lm = teacher
    with pytest.raises(ValueError, match="pass a .gguf teacher"):
        teacher_targets.check_source("llama.cpp", "teacher.keras", 8)
    with pytest.raises(ValueError, match="pass --top-k K too"):
        teacher_targets.check_source("llama.cpp", path, None)
    with pytest.raises(ValueError, match="must be one of keras, llama.cpp"):
        teacher_targets.check_source("vllm", path, 8)
    teacher_targets.check_source("keras", "teacher.keras", 8)
    with pytest.raises(ValueError, match="--targets-from keras stores"):
        teacher_targets.check_source("keras", "teacher.keras", None)
    monkeypatch.setattr(runtime, "available", lambda: False)
    with pytest.raises(ValueError, match="needs llama.cpp: pip install"):
        teacher_targets.check_source("llama.cpp", path, 8)
    monkeypatch.undo()
    monkeypatch.setattr(teacher_targets, "CHUNK", 4)
    # Stored for top 5; a resume asking for top 4 is refused, the files kept.
    _count_logits(monkeypatch, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        _run(teacher, _student(tmp_path), tmp_path / "run")
    folder = tmp_path / "run" / teacher_targets.FOLDER
    before = {p.name: checkpoint.file_digest(p) for p in folder.iterdir()}
    with pytest.raises(ValueError, match=r"computed for another run \(.*top_k 5 → 4"):
        _run(teacher, _student(tmp_path), tmp_path / "run", resume=True, top_k=4)
    assert {p.name: checkpoint.file_digest(p) for p in folder.iterdir()} == before
    # A teacher that is not a .gguf file, through `distill` itself.
    with pytest.raises(ValueError, match="pass a .gguf teacher"):
        distill.distill(
            lm,
            _student(tmp_path),
            (_windows(12, 0, 50), _windows(4, 1, 50)),
            str(tmp_path / "other"),
            num_steps=2,
            batch_size=4,
            kd_options={"top_k": 5, "targets_from": "llama.cpp"},
            teacher_path=str(tmp_path / "teacher.keras"),
            verbose=False,
        )


def test_the_command_line_refuses_before_out_is_touched(teacher, tmp_path, capsys):
    from keras_guide import cli

    (tmp_path / "teacher.keras").write_text("not read")
    (tmp_path / "text.txt").write_text("Some training text.\n" * 20)
    out = tmp_path / "out"
    for model, extra, message in (
        (str(tmp_path / "teacher.keras"), ["--top-k", "8"], "a .gguf teacher"),
        (teacher[0], [], "pass --top-k K too"),
    ):
        code = cli.main(
            [
                "compress",
                model,
                "--text",
                str(tmp_path / "text.txt"),
                "--out",
                str(out),
                "--targets-from",
                "llama.cpp",
                *extra,
            ]
        )
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("keras-guide")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err[-2000:]
        assert not out.exists()
