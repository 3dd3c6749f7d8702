"""lm-evaluation-harness tasks whose data are local files (no network)."""

import json
import textwrap


def multiple_choice(*metrics):
    """The YAML of a multiple-choice task over rows `{"question", "choices",
    "gold"}` (the prompt `Question: ...\nAnswer:`), scored by `metrics`."""
    return textwrap.dedent("""\
        output_type: multiple_choice
        doc_to_text: "Question: {{question}}\\nAnswer:"
        doc_to_target: gold
        doc_to_choice: "{{choices}}"
        metric_list:
        """) + "".join(f"  - metric: {m}\n" for m in metrics)


def write_task(folder, name, rows, body):
    """Writes the task `name` into `folder`: `name.jsonl` (one JSON object a
    row of `rows`) and `name.yaml`, lm-eval's `json` data set over that file
    as the `test` split, followed by `body` (the task's own YAML: its
    `output_type`, `doc_to_*` and metrics; dedented). Returns the YAML's
    path."""
    data = folder / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    path = folder / f"{name}.yaml"
    path.write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\n" + textwrap.dedent(body)
    )
    return path
