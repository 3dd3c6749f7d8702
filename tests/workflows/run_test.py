"""The run layer: the one check of a run folder, the budget with its KD
setting, and the record a resume compares."""

import inspect
import json
import os

import pytest

from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation
from keras_guide.workflows import checkpoint
from keras_guide.workflows import distill
from keras_guide.workflows import run


@pytest.fixture
def previous(tmp_path):
    """A run folder holding one output of a previous run."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}")
    return str(out), [str(out / "report.json"), str(out / "student.keras")]


def test_a_previous_run_is_continued_or_replaced_only_when_asked(previous):
    out, written = previous
    with run.run_folder_scope():
        with pytest.raises(run.InputError, match="holds a previous run .*--resume"):
            run.check_run_folder(out, written)
        # A run that cannot resume names --overwrite alone.
        with pytest.raises(run.InputError) as refused:
            run.check_run_folder(out, written, resume=None)
        assert "holds the output of a previous run" in str(refused.value)
        assert "--resume" not in str(refused.value)
        with pytest.raises(run.InputError, match="pass one"):
            run.check_run_folder(out, written, resume=True, overwrite=True)
        assert os.path.exists(written[0])
        # Continued: nothing removed; a resume rule of the run's own decides.
        assert run.check_run_folder(out, written, resume=True) == written[:1]
        seen = []
        run.check_run_folder(out, written, resume=True, resumable=seen.append)
        assert seen == [out]
        # Replaced: by the caller, once its own checks have passed.
        found = run.check_run_folder(out, written, overwrite=True)
        assert found == written[:1] and os.path.exists(written[0])
        run.remove_outputs(found)
        with pytest.raises(run.InputError, match="holds no run to continue"):
            run.check_run_folder(out, written, resume=True)


def test_a_run_folder_is_this_process_s_for_the_command(previous):
    out, written = previous
    lock = os.path.join(out, run.LOCK_FILE)
    with run.run_folder_scope():
        run.check_run_folder(out, written, overwrite=True)
        with open(lock) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert not os.path.exists(lock)


def test_an_input_is_never_written_over_nor_held(tmp_path, previous):
    out, written = previous
    teacher = tmp_path / "run" / "teacher.keras"
    teacher.write_text("weights")
    with run.run_folder_scope():
        with pytest.raises(run.InputError, match="holds the input TEACHER"):
            run.check_run_folder(out, written, {"TEACHER": [str(teacher)]})
        with pytest.raises(run.InputError, match="write over or into the input"):
            run.check_run_folder(out, written, {"--student": str(tmp_path)})
        # A file out: its folder is checked, and not taken as a run folder.
        target = str(tmp_path / "student.keras")
        with open(target, "w") as f:
            f.write("the user's file")
        with pytest.raises(run.InputError, match="holds the output of a previous"):
            run.check_run_folder(target, [target], resume=None, out_is_file=True)
        run.check_run_folder(
            target, [target], resume=None, overwrite=True, out_is_file=True
        )
        assert not os.path.exists(tmp_path / run.LOCK_FILE)
    with open(target) as f:
        assert f.read() == "the user's file"
    with pytest.raises(run.InputError, match="is a file"):
        run.check_run_folder(target, [target + "/x"])


@pytest.mark.parametrize(
    "field, message",
    [
        ({"steps": 0}, "`steps` must be an integer ≥ 1"),
        ({"batch_size": 2.0}, "`batch_size` must be an integer"),
        ({"warmup_steps": -1}, "`warmup_steps` must be an integer ≥ 0"),
        ({"learning_rate": -1e-3}, "uphill"),
        ({"learning_rate": float("nan")}, "finite number"),
        ({"kd": {"top_k": 0}}, "must be a positive integer"),
        ({"kd": {"tau": 2.0}}, "accepts 'temperature'"),
    ],
)
def test_a_budget_out_of_range_is_refused_when_made(field, message):
    with pytest.raises(ValueError, match=message):
        run.Budget(**field)


def test_the_warm_up_is_a_tenth_unless_given():
    assert run.Budget(steps=150).warmup == 15
    assert run.Budget(steps=5).warmup == 1
    assert run.Budget(steps=150, warmup_steps=0).warmup == 0


def test_the_kd_setting_gives_the_distiller_and_what_a_run_records():
    def default(function, name):
        return inspect.signature(function).parameters[name].default

    assert run.distiller_arguments(None) is None
    assert run.distiller_arguments(False) is None
    assert run.distiller_arguments({}) == {}
    arguments = run.distiller_arguments(
        {"temperature": 2.0, "student_loss_weight": 0.25, "top_k": 4}
    )
    assert arguments["student_loss_weight"] == 0.25
    assert arguments["distillation_losses"].temperature == 2.0
    assert run.kd_settings(None) == {
        "temperature": 0.0,
        "student_loss_weight": 1.0,
        "top_k": 0,
    }
    assert run.kd_settings({}) == {
        "temperature": float(default(LogitsDistillation, "temperature")),
        "student_loss_weight": float(default(Distiller, "student_loss_weight")),
        "top_k": 0,
    }
    assert run.kd_settings({"top_k": 8, "targets_from": "keras"})["targets_from"] == (
        "keras"
    )


def test_distill_keywords_describe_a_budget(tmp_path):
    budget = distill.budget_from_keywords(num_steps=40, kd_options=False)
    assert (budget.steps, budget.batch_size, budget.kd) == (40, 16, None)
    assert distill.budget_from_keywords().kd == {}
    assert distill.budget_from_keywords(kd_options=run.RECIPE).kd == run.RECIPE
    with pytest.raises(TypeError, match="not both"):
        distill.distill(
            None, None, None, str(tmp_path / "run"), run.Budget(), num_steps=3
        )


def test_a_resume_with_other_settings_is_refused_naming_the_option(tmp_path):
    settings = {"steps": 150, "seed": 0, "kd": run.RECIPE}
    run.same_run(str(tmp_path), False, settings)
    with open(tmp_path / run.RUN_FILE) as f:
        assert json.load(f) == settings
    run.same_run(str(tmp_path), True, dict(settings))
    with pytest.raises(checkpoint.ResumeError, match="--seed: 0 -> 1; --steps: 150"):
        run.same_run(str(tmp_path), True, {**settings, "seed": 1, "steps": 151})
