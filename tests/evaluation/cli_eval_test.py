"""`keras-guide eval`'s command line: lm-evaluation-harness tasks from local
files beside the perplexity protocol, and one line for each mistake."""

import json
import textwrap

import pytest

from keras_guide import cli
from keras_guide.evaluation import harness
from keras_guide.workflows import inputs
from tests.harness import gguf_files
from tests.harness.lm_eval_tasks import multiple_choice
from tests.harness.lm_eval_tasks import write_task


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    gguf_files.write_llama(root / "m.gguf", metadata={"llama.context_length": 64})
    rows = [
        {"question": q, "choices": c, "gold": g}
        for q, c, g in (
            ("Where does the cat sleep?", ["on the mat", "in the sea"], 0),
            ("What is the sun?", ["a star", "a stone", "the sea"], 0),
            ("Which one is heavier?", ["iron", "air"], 1),
        )
    ]
    (root / "tasks").mkdir()
    write_task(root / "tasks", "kg_cli", rows, multiple_choice("acc"))
    (root / "text.txt").write_text(textwrap.dedent(harness.__doc__ or "") * 4)
    return root


def test_tasks_and_perplexity_in_one_report(files, tmp_path):
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "eval",
                str(files / "m.gguf"),
                "--text",
                str(files / "text.txt"),
                "--context",
                "16",
                "--chunks",
                "2",
                "--tasks",
                "kg_cli",
                "--task-path",
                str(files / "tasks"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "eval.json").read_text())
    name = str(files / "m.gguf")
    direct = harness.evaluate_tasks(
        inputs.load_model(name),
        ["kg_cli"],
        include_path=str(files / "tasks"),
        progress=False,
    )
    assert report["tasks"][name]["kg_cli"]["acc"] == direct["kg_cli"]["acc"]
    assert report["results"]["16"][name]["chunks"] == 2
    table = (out / "eval.md").read_text()
    assert "### lm-evaluation-harness" in table
    assert f"| {name} | kg_cli | acc |" in table


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            [],
            "give --text (perplexity with llama-perplexity's protocol) and/or --tasks",
        ),
        (["--tasks", "hellaswag"], "hellaswag"),
        (["--text", "missing.txt"], "--text missing.txt: no such file or folder"),
        (["--text", "TEXT", "--context", "4096"], "--context 4096 is above"),
        (["--tasks", "kg_cli", "--base", "M"], "--base compares models on --text"),
    ],
)
def test_mistakes_get_one_line(files, capsys, extra, message):
    extra = [
        str(files / "text.txt")
        if a == "TEXT"
        else str(files / "m.gguf")
        if a == "M"
        else a
        for a in extra
    ]
    assert cli.main(["eval", str(files / "m.gguf"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
