"""Mistakes on the `keras-guide` command line: each is answered with one line
on stderr saying what was wrong and what to do, exit code 2 (1 for an
unexpected error, with a hint at `--debug`), no traceback, and no file the
user did not ask to overwrite is changed."""

import hashlib
import os

import pytest

from keras_guide import cli
from tests.harness.workspace import STUDENT
from tests.harness.workspace import make_workspace

TINY = {
    "vocabulary_size": 2048,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "dropout": 0.0,
    "max_sequence_length": 16,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("cli_inputs"), TINY)
    (root / "not_a_model.keras").write_bytes(os.urandom(2000))
    (root / "a_file").write_text("not a folder")
    return root


def _digest(path):
    if os.path.isdir(path):
        return {
            name: _digest(os.path.join(path, name)) for name in sorted(os.listdir(path))
        }
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _distill(root, out, *extra):
    return [
        "distill",
        str(root / "teacher.keras"),
        "--student",
        str(root / "student.keras"),
        "--text",
        str(root / "texts"),
        "--tokenizer",
        "demo",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--sequence-length",
        "8",
        "--steps",
        "2",
        *extra,
    ]


def _one_line(capsys, code, expected, *patterns):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("keras-guide")]
    assert code == expected, err[-3000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for pattern in patterns:
        assert pattern in lines[0], (pattern, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--learning-rate", "-1"),
        ("--learning-rate", "0"),
        ("--learning-rate", "nan"),
        ("--learning-rate", "inf"),
        ("--learning-rate", "fast"),
        ("--steps", "0"),
        ("--steps", "-5"),
        ("--steps", "1.5"),
        ("--batch-size", "0"),
        ("--temperature", "0"),
        ("--temperature", "-2"),
        ("--student-loss-weight", "1.5"),
        ("--student-loss-weight", "-0.1"),
        ("--checkpoint-every", "0"),
        ("--sequence-length", "1"),
        ("--seed", "-1"),
        ("--model-parallel", "0"),
    ],
)
def test_an_option_out_of_range_is_one_line_and_exit_2(root, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_distill(root, root / "never", option, value))
    _one_line(
        capsys,
        exit_info.value.code,
        2,
        f"argument {option}",
        f"Received: '{value}'",
        "--help",
    )
    assert not (root / "never").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["init", "T", "--out", "s.keras", "--hidden-dim", "0"],
        ["init", "T", "--out", "s.keras", "--num-layers", "-1"],
        ["init", "T", "--out", "s.keras", "--seed", "x"],
        [
            "compare",
            "--teacher",
            "T",
            "--out",
            "o",
            "--text",
            "t",
            "--eval-windows",
            "0",
        ],
        ["demo", "--steps", "0"],
        ["distill", "--teacher", "T"],
        ["frobnicate"],
    ],
)
def test_parsing_mistakes_of_every_command_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    _one_line(capsys, exit_info.value.code, 2, "error:")


def test_missing_or_unloadable_inputs_are_named(root, capsys):
    out = root / "never"
    argv = _distill(root, out)
    argv[1] = str(root / "missing.keras")
    _one_line(capsys, cli.main(argv), 2, "TEACHER", "no such file or folder")
    argv = _distill(root, out)
    argv[argv.index("--text") + 1] = str(root / "no_texts")
    _one_line(capsys, cli.main(argv), 2, "--text", "no such file or folder")
    code = cli.main(
        [
            "init",
            str(root / "not_a_model.keras"),
            "--out",
            str(root / "s.keras"),
            *STUDENT,
        ]
    )
    _one_line(
        capsys,
        code,
        2,
        "not_a_model.keras is not a complete .keras archive",
        "model.save",
    )
    code = cli.main(
        ["init", str(root / "a_file"), "--out", str(root / "s.keras"), *STUDENT]
    )
    _one_line(capsys, code, 2, "`.keras` archive")
    argv = _distill(root, out, "--tokenizer", str(root / "nowhere"))
    _one_line(capsys, cli.main(argv), 2, "`tokenizer` must be")
    _one_line(
        capsys,
        cli.main(_distill(root, out, "--batch-size", "100000")),
        2,
        "`batch_size` must be at most the number of windows",
    )
    _one_line(
        capsys,
        cli.main(_distill(root, out, "--sequence-length", "64")),
        2,
        "max_sequence_length (16)",
    )


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(root, capsys):
    before = _digest(root / "teacher.keras")
    for extra in ([], ["--overwrite"]):
        code = cli.main(
            [
                "init",
                str(root / "teacher.keras"),
                "--out",
                str(root / "teacher.keras"),
                *STUDENT,
                *extra,
            ]
        )
        _one_line(capsys, code, 2, "would write over or into the input")
    # A distill whose --out holds its own --student, or is the teacher file.
    run = root / "run_with_input"
    run.mkdir()
    (run / "student.keras").write_bytes((root / "student.keras").read_bytes())
    argv = _distill(root, run, "--overwrite")
    argv[argv.index("--student") + 1] = str(run / "student.keras")
    _one_line(capsys, cli.main(argv), 2, "would write over or into the input --student")
    argv = _distill(root, root / "teacher.keras")
    _one_line(capsys, cli.main(argv), 2, "the input TEACHER")
    assert _digest(root / "teacher.keras") == before
    assert _digest(run / "student.keras") == _digest(root / "student.keras")


def test_a_previous_output_is_kept_unless_overwrite(root, capsys):
    out = root / "kept.keras"
    out.write_bytes(b"the user's file")
    code = cli.main(["init", str(root / "teacher.keras"), "--out", str(out), *STUDENT])
    _one_line(capsys, code, 2, "holds the output of a previous run", "--overwrite")
    assert out.read_bytes() == b"the user's file"
    assert (
        cli.main(
            [
                "init",
                str(root / "teacher.keras"),
                "--out",
                str(out),
                *STUDENT,
                "--overwrite",
            ]
        )
        == 0
    )
    assert out.read_bytes() != b"the user's file"
    compare = root / "compare_out"
    compare.mkdir()
    (compare / "results.json").write_text("{}")
    code = cli.main(
        [
            "compare",
            "--teacher",
            str(root / "teacher.keras"),
            "--text",
            str(root / "texts"),
            "--tokenizer",
            "demo",
            "--out",
            str(compare),
            *STUDENT,
        ]
    )
    _one_line(capsys, code, 2, "results.json", "--overwrite")
    demo = root / "demo_out"
    demo.mkdir()
    (demo / "ablation.png").write_bytes(b"png")
    _one_line(
        capsys, cli.main(["demo", "--quick", "--out", str(demo)]), 2, "ablation.png"
    )
    assert (compare / "results.json").read_text() == "{}"
    assert (demo / "ablation.png").read_bytes() == b"png"


def test_a_distill_into_a_previous_run_is_refused_and_resume_or_overwrite_decide(
    root, capsys
):
    out = root / "run"
    assert cli.main(_distill(root, out)) == 0
    before = _digest(out)
    _one_line(
        capsys,
        cli.main(_distill(root, out)),
        2,
        "holds a previous run",
        "--resume",
        "--overwrite",
    )
    _one_line(capsys, cli.main(_distill(root, out, "--resume")), 2, "has finished")
    _one_line(
        capsys, cli.main(_distill(root, out, "--resume", "--overwrite")), 2, "pass one"
    )
    assert _digest(out) == before
    assert cli.main(_distill(root, out, "--overwrite", "--seed", "3")) == 0
    assert _digest(out) != before


def test_an_unwritable_or_file_out_is_refused_before_loading(root, capsys):
    blocked = root / "a_file" / "run"  # a folder under a file cannot exist
    code = cli.main(_distill(root, blocked))
    _one_line(capsys, code, 2, "Cannot write to", "writable --out")
    code = cli.main(_distill(root, root / "a_file"))
    _one_line(capsys, code, 2, "is a file")
    code = cli.main(
        [
            "init",
            str(root / "teacher.keras"),
            "--out",
            str(blocked / "s.keras"),
            *STUDENT,
        ]
    )
    _one_line(capsys, code, 2, "Cannot write to")
    code = cli.main(
        ["init", str(root / "teacher.keras"), "--out", str(root / "s.txt"), *STUDENT]
    )
    _one_line(capsys, code, 2, "--out must be a .keras file")


def test_a_diverging_run_says_what_to_do(root, capsys):
    code = cli.main(
        _distill(root, root / "diverged", "--learning-rate", "1e30", "--steps", "20")
    )
    _one_line(capsys, code, 2, "Training loss became", "Lower the learning rate")


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
    root, capsys, monkeypatch
):
    def broken(args):
        raise TypeError("an internal mistake")

    monkeypatch.setitem(cli._COMMANDS, "init", broken)
    argv = [
        "init",
        str(root / "teacher.keras"),
        "--out",
        str(root / "x.keras"),
        *STUDENT,
    ]
    _one_line(
        capsys,
        cli.main(argv),
        1,
        "unexpected TypeError: an internal mistake",
        "--debug",
    )
    with pytest.raises(TypeError, match="an internal mistake"):
        cli.main(["--debug", *argv])
    with pytest.raises(TypeError, match="an internal mistake"):
        cli.main([*argv, "--debug"])


def test_calibration_and_text_that_are_not_utf8_text_are_named(root, capsys):
    binary = root / "binary"
    binary.mkdir()
    (binary / "weights.txt").write_bytes(os.urandom(3000))
    latin = root / "latin"
    latin.mkdir()
    (latin / "play.txt").write_bytes("Où est la tête? Ça va. ".encode("latin-1") * 200)
    for folder in (binary, latin):
        code = cli.main(
            [
                "init",
                str(root / "teacher.keras"),
                "--out",
                str(root / "calibrated.keras"),
                *STUDENT,
                "--calibration",
                str(folder),
                "--select",
                "importance",
            ]
        )
        _one_line(capsys, code, 2, str(folder), "is not UTF-8 text", "iconv")
        argv = _distill(root, root / "never")
        argv[argv.index("--text") + 1] = str(folder)
        _one_line(capsys, cli.main(argv), 2, "is not UTF-8 text")
    # A missing calibration path is named before the teacher loads.
    code = cli.main(
        [
            "init",
            str(root / "teacher.keras"),
            "--out",
            str(root / "calibrated.keras"),
            *STUDENT,
            "--calibration",
            str(root / "absent"),
        ]
    )
    _one_line(capsys, code, 2, "--calibration", "no such file or folder")
    assert not os.path.exists(root / "calibrated.keras")


def test_guide_options_are_checked_before_the_teacher_loads(root, capsys):
    # not_a_model.keras cannot load: the options' error must come first.
    code = cli.main(
        [
            "init",
            str(root / "not_a_model.keras"),
            "--out",
            str(root / "never.keras"),
            *STUDENT,
            "--select",
            "importance",
        ]
    )
    _one_line(capsys, code, 2, "select", "calibration")
    assert not os.path.exists(root / "never.keras")


def test_the_teacher_is_the_first_argument_and_the_old_flag_still_works(root, capsys):
    parser = cli.build_parser()
    for command in (["distill", "--student", "S"], ["compare"]):
        rest = [*command[1:], "--text", "t", "--out", "o"]
        first = parser.parse_args([command[0], "T", *rest])
        flag = parser.parse_args([command[0], "--teacher", "T", *rest])
        assert (first.teacher, first.teacher_flag) == ("T", None)
        assert (flag.teacher, flag.teacher_flag) == (None, "T")
    # Two different teachers, or none, are one line before anything loads.
    argv = _distill(root, root / "never_two_teachers")
    code = cli.main([*argv, "--teacher", str(root / "student.keras")])
    _one_line(capsys, code, 2, "pass one teacher", "student.keras", "teacher.keras")
    code = cli.main(["compare", "--text", str(root / "texts"), "--out", "o"])
    _one_line(capsys, code, 2, "pass one teacher", "none")
    assert not os.path.exists(root / "never_two_teachers")
