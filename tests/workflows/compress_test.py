"""`keras-guide compress` on tiny models, every backend: the shape search, the
recipe it applies, the report, the student written as the teacher came, bad
input, and a resumed run equal to an uninterrupted one."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

pytest.importorskip("gguf", reason="GGUF needs `pip install gguf`")

from keras_guide import cli  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.workflows import compress  # noqa: E402
from keras_guide.workflows import llama_cpp_checks  # noqa: E402
from keras_guide.workflows import run  # noqa: E402
from keras_guide.workflows import shapes  # noqa: E402
from tests.harness.workspace import ctrl_c_at  # noqa: E402
from tests.harness.workspace import make_gguf_workspace  # noqa: E402

QUICK = [
    "--steps",
    "4",
    "--batch-size",
    "4",
    "--sequence-length",
    "16",
    "--calibration-tokens",
    "256",
    "--checkpoint-every",
    "2",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_gguf_workspace(tmp_path_factory.mktemp("compress"))


def _run(workspace, out, *extra):
    """`compress` of the tiny teacher to 50 % (a later `--size` in `extra`
    wins)."""
    return cli.main(
        [
            "compress",
            str(workspace / "teacher.gguf"),
            "--size",
            "50%",
            "--text",
            str(workspace / "train"),
            "--eval",
            str(workspace / "eval"),
            "--out",
            str(out),
            *QUICK,
            *extra,
        ]
    )


def test_sizes_and_shapes_from_a_target(workspace):
    teacher = load_gguf(workspace / "teacher.gguf")
    total = shapes.count_parameters(teacher)
    assert shapes.parse_parameter_count("25%", total) == int(0.25 * total)
    assert shapes.parse_parameter_count("20k", total) == 20_000
    assert shapes.parse_parameter_count("num_layers=2,hidden_dim=16", total) is None
    assert shapes.parse_shape("num_layers=2, hidden_dim=16", teacher) == {
        "num_layers": 2,
        "hidden_dim": 16,
    }
    candidates = shapes.candidate_shapes(teacher, int(0.6 * total))
    assert candidates
    for shape in candidates:
        # Exact counts, each within the target, heads kept 8 wide, groups of
        # at most the teacher's two query heads per key/value head.
        import keras_guide

        student = keras_guide.build_student(teacher, **shape.sizes)
        assert shapes.count_parameters(student) == shape.parameters
        assert 0.7 * 0.6 * total <= shape.parameters <= 0.6 * total
        sizes = shape.sizes
        assert sizes["hidden_dim"] // sizes["num_heads"] == 8
        assert sizes["num_heads"] // sizes["num_key_value_heads"] <= 2


@pytest.mark.parametrize(
    "size, message",
    [
        ("0.5%", "No llama student of this teacher has between"),
        ("150%", "not smaller than the teacher's"),
        ("-3", "a share of the teacher's parameters"),
        ("widths=3", "has no size 'widths'"),
    ],
)
def test_sizes_no_shape_meets(workspace, tmp_path, capsys, size, message):
    code = cli.main(
        [
            "compress",
            str(workspace / "teacher.gguf"),
            "--size",
            size,
            "--text",
            str(workspace / "train"),
            "--out",
            str(tmp_path / "out"),
            *QUICK,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_compress_chooses_records_reports_and_writes_a_gguf(
    workspace, tmp_path, monkeypatch
):
    # The tiny teacher's context is 64 tokens: the protocol at 16 and 32
    # (and the default 512 refused by the model, 3,000 words by the text).
    monkeypatch.setattr(llama_cpp_checks, "PERPLEXITY_CONTEXTS", (16, 32, 128))
    monkeypatch.setattr(llama_cpp_checks, "PERPLEXITY_TOKENS", 128)
    out = tmp_path / "out"
    assert _run(workspace, out, "--gguf-dtype", "q8_0", "q4_k_m", "--export", "hf") == 0
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    assert search["chosen"] == min(search["candidates"], key=lambda r: r["score"])
    assert report["recipe"]["guide"] == {
        "projection": "channels",
        "select": "importance",
        "layer_map": "importance",
        "norm": "diagonal",
        "rescale": True,
    }
    assert report["recipe"]["kd"] == run.RECIPE
    scores = report["evaluation"]
    for key in ("teacher_loss", "student_loss", "kl", "top1_agreement"):
        assert np.isfinite(scores[key])
    assert set(report["seconds"]) == {
        "import",
        "calibration",
        "candidate search",
        "training",
        "evaluation",
        "export",
        "llama.cpp checks",
        "perplexity protocol",
    }
    # llama.cpp ran both files, and the student's file agrees with the Keras
    # student (q8_0: within quantization error).
    assert report["llama_cpp"]["teacher"]["prompt_tokens_per_s"] > 0
    assert report["llama_cpp"]["parity"]["kl"] < 0.05
    text = (out / "report.md").read_text()
    assert "**(chosen)**" in text and "Where the time went" in text
    # Teacher and student with llama-perplexity's protocol on the written
    # files, on the held-out text written beside them; `keras-guide eval` on
    # those files gives the same numbers.
    measured = report["llama_perplexity"]
    assert measured["runtime"] == "llama.cpp"
    assert (out / "heldout.txt").read_text() == (
        workspace / "eval" / "eval0.txt"
    ).read_text() + "\n"
    assert measured["contexts"]["128"] == {
        "skipped": "above the models' context length (64)"
    }
    figures = measured["contexts"]["32"]
    assert figures["student"]["vs_base"]["ln_ppl_ratio"] == pytest.approx(
        figures["student"]["nll"] - figures["teacher"]["nll"]
    )
    assert "| llama.cpp perplexity, 32-token chunks |" in text
    # Every GGUF type asked for is measured in llama.cpp; the Hugging Face
    # folder is written beside them.
    assert set(report["llama_cpp"]) >= {"teacher", "student", "student.q4_k_m"}
    assert figures["student.q4_k_m"]["vs_base"]["kl"] > 0
    assert "| student.q4_k_m.gguf |" in text
    assert (out / "student_hf" / "config.json").exists()
    assert (
        cli.main(
            [
                "eval",
                str(out / "student.gguf"),
                "--base",
                str(workspace / "teacher.gguf"),
                "--text",
                str(out / "heldout.txt"),
                "--context",
                "32",
                "--chunks",
                str(figures["teacher"]["chunks"]),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "eval" / "eval.json").read_text())["results"]
    for name, role in (
        (str(workspace / "teacher.gguf"), "teacher"),
        (str(out / "student.gguf"), "student"),
    ):
        assert again["32"][name]["nll"] == pytest.approx(figures[role]["nll"], rel=1e-9)
    assert (out / "curve.png").stat().st_size > 0
    # The student as the teacher came: a GGUF file (q8_0 by default) with the
    # teacher's tokenizer, holding the Keras student.
    student = keras.saving.load_model(out / "student.keras")
    back = load_gguf(out / "student.gguf")
    # The file says how it was made: the context it was trained at.
    from keras_guide.gguf.reader import GGUFFile

    assert "trained on 16-token windows" in GGUFFile(out / "student.gguf").get(
        "general.description"
    )
    for got, want in zip(back.backbone.weights, student.backbone.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got),
            keras.ops.convert_to_numpy(want),
            rtol=0.05,
            atol=0.02,
        )


def test_bad_inputs_are_refused_before_anything_runs(workspace, tmp_path, capsys):
    train = workspace / "train"
    # Evaluation text that is training text.
    assert (
        cli.main(
            [
                "compress",
                str(workspace / "teacher.gguf"),
                "--text",
                str(train),
                "--eval",
                str(train / "train0.txt"),
                "--out",
                str(tmp_path / "a"),
                *QUICK,
            ]
        )
        == 2
    )
    assert "--eval and --text share" in capsys.readouterr().err
    # ... or repeats it under another name.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "same.txt").write_text((train / "train1.txt").read_text())
    assert (
        cli.main(
            [
                "compress",
                str(workspace / "teacher.gguf"),
                "--text",
                str(train),
                "--eval",
                str(copy),
                "--out",
                str(tmp_path / "b"),
                *QUICK,
            ]
        )
        == 2
    )
    assert "also occur in the training text" in capsys.readouterr().err
    # Too little text for the calibration.
    assert (
        cli.main(
            [
                "compress",
                str(workspace / "teacher.gguf"),
                "--text",
                str(train),
                "--out",
                str(tmp_path / "c"),
                *QUICK[:-4],
                "--calibration-tokens",
                "10000000",
            ]
        )
        == 2
    )
    assert "calibration needs 10000000" in capsys.readouterr().err
    # An --out that is an input; a teacher that is not there.
    assert (
        cli.main(
            [
                "compress",
                str(workspace / "teacher.gguf"),
                "--text",
                str(train),
                "--out",
                str(workspace),
                *QUICK,
            ]
        )
        == 2
    )
    assert "holds the input TEACHER" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "compress",
                str(tmp_path / "none.gguf"),
                "--text",
                str(train),
                "--out",
                str(tmp_path / "d"),
                *QUICK,
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_previous_runs_resume_to_the_uninterrupted_result(workspace, tmp_path, capsys):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert _run(workspace, straight) == 0
    with ctrl_c_at(3):
        assert _run(workspace, broken) == 130
    assert "--resume continues" in capsys.readouterr().err
    # A previous run is neither replaced nor mixed without being asked.
    assert _run(workspace, broken) == 2
    assert "--resume to continue it, --overwrite" in capsys.readouterr().err
    assert _run(workspace, broken, "--resume") == 0
    for name in ("student.keras",):
        a = keras.saving.load_model(straight / name)
        b = keras.saving.load_model(broken / name)
        for x, y in zip(a.weights, b.weights):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)
            )
    assert (
        json.loads((straight / "report.json").read_text())["evaluation"]
        == json.loads((broken / "report.json").read_text())["evaluation"]
    )
    # A finished run whose models are gone (a copy that kept only the reports)
    # trains again on --resume, to the same student, and says why.
    for name in ("student.keras", compress.INITIAL_FILE, "checkpoint"):
        shutil.rmtree(broken / name) if (broken / name).is_dir() else (
            broken / name
        ).unlink()
    capsys.readouterr()
    assert _run(workspace, broken, "--resume") == 0
    assert "student.keras is missing: training again" in capsys.readouterr().out
    assert (
        json.loads((straight / "report.json").read_text())["evaluation"]
        == json.loads((broken / "report.json").read_text())["evaluation"]
    )
    assert _run(workspace, broken, "--overwrite") == 0
    assert not [n for n in os.listdir(broken) if n.startswith(".keras-guide-tmp")]


def test_cross_entropy_alone_never_runs_the_teacher_in_training(
    workspace, tmp_path, monkeypatch
):
    from keras_guide.distillation import Distiller

    def refuse(*args, **kwargs):
        raise AssertionError("a Distiller trained for --kd off")

    monkeypatch.setattr(Distiller, "compute_loss", refuse)
    assert _run(workspace, tmp_path / "ce", "--kd", "off") == 0
    report = json.loads((tmp_path / "ce" / "report.json").read_text())
    assert report["recipe"]["kd"] is None
    assert report["training"]["tokens"] > 0


def test_guide_options_and_stored_top_k_are_kept(workspace, tmp_path, capsys):
    # Data-free options: the teacher is not run on calibration text.
    out = tmp_path / "selection"
    assert (
        _run(
            workspace,
            out,
            "--projection",
            "select",
            "--select",
            "uniform",
            "--layer-map",
            "first",
            "--no-rescale",
            "--top-k",
            "8",
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["guide"] == {
        "projection": "select",
        "select": "uniform",
        "layer_map": "first",
        "norm": "diagonal",
        "rescale": False,
    }
    assert report["search"]["calibration"]["tokens"] == 0
    assert report["recipe"]["kd"] == {**run.RECIPE, "top_k": 8}
    assert report["training"]["teacher_top_k_seconds"] > 0
    # One option given: the others take the data-aware recipe.
    out = tmp_path / "one"
    assert _run(workspace, out, "--projection", "activations", "--kd", "off") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["guide"]["projection"] == "activations"
    assert report["recipe"]["guide"]["select"] == "importance"
    assert report["search"]["calibration"]["tokens"] >= 256
    # Distillation settings without distillation.
    assert _run(workspace, tmp_path / "off", "--kd", "off", "--top-k", "8") == 2
    assert "--kd off trains without the teacher: --top-k" in capsys.readouterr().err


def test_random_init_is_the_unguided_seeded_baseline(workspace, tmp_path, capsys):
    from keras_guide.guide import build_student

    out = tmp_path / "random"
    assert _run(workspace, out, "--init", "random", "--kd", "off", "--seed", "3") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["guide_recipe"] == "random init (not guided)"
    assert report["recipe"]["guide"] == {}
    assert report["search"]["calibration"]["tokens"] == 0
    # The student it trained from is the family's own initialization, drawn
    # from --seed: a guided start would differ from it everywhere.
    started = keras.saving.load_model(out / compress.INITIAL_FILE)
    teacher = load_gguf(str(workspace / "teacher.gguf"))
    keras.utils.set_random_seed(3)
    drawn = build_student(teacher, **report["student"]["sizes"])
    assert len(started.weights) == len(drawn.weights)
    for a, b in zip(started.weights, drawn.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    # A resume must start the same way.
    capsys.readouterr()
    assert _run(workspace, out, "--kd", "off", "--seed", "3", "--resume") == 2
    assert "--init" in capsys.readouterr().err
    # A random start takes no GUIDE option.
    code = _run(workspace, tmp_path / "mixed", "--init", "random", "--no-rescale")
    assert code == 2
    err = capsys.readouterr().err
    assert "--init random is not guided" in err and "--no-rescale" in err
    assert not (tmp_path / "mixed").exists()
    # The Python API refuses the same when the settings are made.
    with pytest.raises(ValueError, match="must be one of"):
        compress.ShapeSearch(init="zeros")
    with pytest.raises(ValueError, match="takes no GUIDE option"):
        compress.ShapeSearch(init="random", guide_options={"rescale": False})


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="the search is a loop over distill runs (each backend's distill and "
    "resume are tested elsewhere): the quickest backend suffices (passed on "
    "TensorFlow too, 70 s there)",
)
def test_search_steps_compare_trained_candidates_and_the_chosen_continues(
    workspace, tmp_path
):
    quick = ["--checkpoint-every", "1", "--candidates", "2", "--size"]
    out = tmp_path / "searched"
    code = _run(workspace, out, *quick, "80%", "--search-steps", "2")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    assert search["search_steps"] == 2 and len(search["candidates"]) == 2
    for row in search["candidates"]:
        assert row["score"] < row["score_after_init"]  # the steps trained it
    assert search["chosen"] == min(search["candidates"], key=lambda r: r["score"])
    # The chosen candidate's two steps are the run's first two.
    assert report["training"]["start_step"] == 2
    assert not (out / compress.SEARCH_DIR).exists()
    assert "after 2 steps" in (out / "report.md").read_text()
    # The same student as a run of the chosen shape without the search.
    sizes = ",".join(f"{k}={v}" for k, v in search["chosen"]["sizes"].items())
    plain = tmp_path / "plain"
    code = _run(workspace, plain, *quick, sizes)
    assert code == 0
    got = keras.saving.load_model(out / "student.keras").weights
    want = keras.saving.load_model(plain / "student.keras").weights
    for a, b in zip(got, want):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6
        )


def test_search_steps_auto_trains_where_a_full_width_student_keeps_a_third(
    workspace,
):
    from keras_guide.guide import build_student
    from keras_guide.workflows import search

    teacher = load_gguf(workspace / "teacher.gguf")
    # A third of the tiny teacher's 4 blocks: 2 at full width turn it on.
    two = shapes.count_parameters(build_student(teacher, num_layers=2))
    assert shapes.full_width_blocks(teacher, two) == (2, 4)
    assert search.auto_search_steps(teacher, two, 150) == (
        30,
        "a full-width student keeps 2 of the 4 blocks",
    )
    assert search.auto_search_steps(teacher, two - 1, 150) == (
        0,
        "a full-width student keeps only 1 of the 4 blocks",
    )
    # One step of search would train nothing (the warm-up starts at rate 0).
    assert search.auto_search_steps(teacher, two, 9) == (
        0,
        "a fifth of the run's 9 steps is under 2",
    )
    assert search.auto_search_steps(teacher, two, 10)[0] == 2
    assert search.auto_search_steps(teacher, None, 150)[0] == 0


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="the trained search itself is tested above on torch; this checks "
    "only that auto turns it on",
)
def test_search_steps_auto_trains_the_candidates_of_a_large_cut(
    workspace, tmp_path, capsys
):
    out = tmp_path / "auto"
    quick = ["--size", "80%", "--steps", "10", "--checkpoint-every", "2"]
    assert _run(workspace, out, *quick) == 0
    search = json.loads((out / "report.json").read_text())["search"]
    assert search["search_steps"] == 2
    # Two candidates (the measured setting), and the full width among them.
    width = load_gguf(workspace / "teacher.gguf").backbone.hidden_dim
    assert len(search["candidates"]) in (2, 3)
    assert width in [row["sizes"]["hidden_dim"] for row in search["candidates"]]
    for row in search["candidates"]:
        assert row["score"] < row["score_after_init"]  # its steps trained it
    said = capsys.readouterr().out
    assert (
        "--search-steps auto: 2 (a full-width student keeps 3 of the 4 blocks), "
        "2 candidates"
    ) in said


def test_search_steps_takes_auto_or_a_count(workspace, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _run(workspace, tmp_path / "out", "--search-steps", "some")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert (
        "--search-steps: must be auto or an integer ≥ 0. Received: 'some'" in (err[-1])
    )
    assert not (tmp_path / "out").exists()


def test_search_steps_not_fewer_than_the_steps_are_refused(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    code = _run(workspace, out, "--search-steps", "4", "--overwrite")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--search-steps 4 must be fewer than the run's 4 steps" in err[0]
    assert (out / "report.json").read_text() == "{}"


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="llama.cpp measures the candidates' files in child processes; the "
    "quickest backend suffices",
)
def test_runtime_limits_keep_the_candidates_llama_cpp_measures_within_them(
    workspace, tmp_path, capsys
):
    from keras_guide.gguf import runtime

    if not runtime.available():
        pytest.skip("llama.cpp (llama-cpp-python) is not installed")
    # Impossible: refused before training, naming the closest candidate.
    refused = tmp_path / "refused"
    capsys.readouterr()
    code = _run(workspace, refused, "--max-memory", "1MiB", "--candidates", "2")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "No candidate student meets --max-memory 1 MiB in llama.cpp" in err[0]
    assert "the closest, num_layers=" in err[0] and "MiB and generates" in err[0]
    assert not (refused / "checkpoint").exists()
    assert not (refused / "student.keras").exists()
    # Loose: every candidate measured, the chosen one among those that meet.
    out = tmp_path / "out"
    code = _run(
        workspace,
        out,
        "--max-memory",
        "64GiB",
        "--min-speedup",
        "0.01",
        "--candidates",
        "2",
    )
    assert code == 0
    search = json.loads((out / "report.json").read_text())["search"]
    measured = search["runtime_limits"]
    assert measured and all(row["meets"] for row in measured)
    for row in measured:
        assert row["peak_rss_mib"] > 1 and row["speedup"] > 0.01
    assert search["chosen"]["sizes"] in [row["sizes"] for row in measured]


def test_runtime_limits_need_a_gguf_teacher(tmp_path, capsys):
    code = cli.main(
        [
            "compress",
            "demo",
            "--text",
            "shakespeare:train",
            "--out",
            str(tmp_path / "out"),
            "--min-speedup",
            "2",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--min-speedup is measured by llama.cpp on the student's .gguf" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["0MiB", "lots", "3TiB"])
def test_max_memory_must_be_a_size(tmp_path, capsys, text):
    with pytest.raises(SystemExit):
        cli.main(
            [
                "compress",
                "demo",
                "--text",
                "shakespeare:train",
                "--out",
                str(tmp_path / "out"),
                "--max-memory",
                text,
            ]
        )
    assert "--max-memory: must be" in capsys.readouterr().err
