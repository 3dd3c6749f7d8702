"""`keras-guide compress --size 75% 50%`: a ladder of two rungs, the second
distilled from the first, each with its report and a `.gguf` llama.cpp ran;
one table; a resume of the finished ladder changes no student; bad ladders
refused in one line before `--out` is touched.

The ladder is a loop over whole `compress` runs (tested on every backend in
`compress_test.py`), so it runs on PyTorch alone, the backend whose process
is quickest here.
"""

import json

import keras
import pytest

pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide import cli  # noqa: E402
from keras_guide.gguf import runtime  # noqa: E402
from keras_guide.workflows import ladder  # noqa: E402
from keras_guide.workflows import llama_cpp_checks  # noqa: E402
from tests.harness.workspace import file_hashes  # noqa: E402
from tests.harness.workspace import make_gguf_workspace  # noqa: E402
from tests.workflows.compress_test import QUICK as COMPRESS_QUICK  # noqa: E402

QUICK = [*COMPRESS_QUICK, "--candidates", "2", "--eval-tokens", "64"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_gguf_workspace(tmp_path_factory.mktemp("ladder"))


def _compress(workspace, out, *sizes_and_flags):
    return cli.main(
        [
            "compress",
            str(workspace / "teacher.gguf"),
            "--text",
            str(workspace / "train"),
            "--eval",
            str(workspace / "eval"),
            "--out",
            str(out),
            *QUICK,
            "--size",
            *sizes_and_flags,
        ]
    )


@pytest.fixture(scope="module")
def ladder_run(workspace):
    # The tiny teacher's context is 64 tokens: llama.cpp's protocol at 16.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(llama_cpp_checks, "PERPLEXITY_CONTEXTS", (16,))
        patch.setattr(llama_cpp_checks, "PERPLEXITY_TOKENS", 128)
        out = workspace / "ladder"
        assert _compress(workspace, out, "75%", "50%") == 0
        before = {
            name: file_hashes(out / name)["student.keras"]
            for name in ("rung1-75pct", "rung2-50pct")
        }
        resumed = _compress(workspace, out, "75%", "50%", "--resume")
    return out, before, resumed


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="a loop over compress runs: one backend suffices",
)
def test_a_ladder_writes_each_rung_from_the_one_before_and_one_table(
    ladder_run, workspace
):
    out, before, resumed = ladder_run
    reports = [
        json.loads((out / name / "report.json").read_text())
        for name in ("rung1-75pct", "rung2-50pct")
    ]
    first, second = reports
    teacher = first["teacher"]["parameters"]
    # Each rung at most its share of the first teacher, each smaller.
    assert first["student"]["parameters"] <= 0.75 * teacher
    assert second["student"]["parameters"] <= 0.5 * teacher
    assert second["student"]["parameters"] < first["student"]["parameters"]
    # The second rung's teacher is the first rung's student, file and model.
    assert second["teacher"]["path"] == str(out / "rung1-75pct" / "student.gguf")
    assert second["teacher"]["parameters"] == first["student"]["parameters"]
    assert second["evaluation"]["teacher_loss"] == pytest.approx(
        first["evaluation"]["student_loss"], abs=1e-4
    )
    # llama.cpp ran both students' files (parity and the perplexity protocol).
    if runtime.available():
        for report in reports:
            assert report["llama_cpp"]["parity"]["kl"] < 0.05, report["llama_cpp"]
            assert (
                report["llama_perplexity"]["contexts"]["16"]["student"]["perplexity"]
                > 1
            )
    table = json.loads((out / ladder.TABLE_FILE).read_text())
    assert [row["parameters"] for row in table["rungs"]] == [
        r["student"]["parameters"] for r in reports
    ]
    assert table["teacher"]["loss"] == first["evaluation"]["teacher_loss"]
    text = (out / ladder.TABLE_TEXT).read_text()
    assert text.count("student.gguf") == 2 and "| 2 | 50% |" in text
    # A resume of the finished ladder changes no student.
    assert resumed == 0
    assert {name: file_hashes(out / name)["student.keras"] for name in before} == (
        before
    )


@pytest.mark.parametrize(
    "sizes, message",
    [
        (["50%", "30k"], "all as shares ('50% 25%') or all as counts"),
        (["25%", "50%"], "each rung of a ladder is smaller than the one before"),
        (["50%", "num_layers=1"], "a ladder takes shares ('50%') or parameter counts"),
    ],
)
def test_bad_ladders_are_refused_before_out_is_touched(
    workspace, tmp_path, capsys, sizes, message
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    before = file_hashes(out)
    capsys.readouterr()
    assert _compress(workspace, out, *sizes, "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert file_hashes(out) == before
