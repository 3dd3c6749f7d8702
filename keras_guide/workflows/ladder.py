"""A ladder of sizes from one `compress`: `--size 50% 25%`.

Each rung is a whole `compress` run (search, guided initialization,
distillation, report, files) whose teacher is the previous rung's student,
the first rung's the given teacher; every size is a share or count of the
first teacher's parameters. Each rung writes its own folder (`rung1-50pct/`,
...) under `--out`, and `ladder.md` / `ladder.json` put the rungs in one
table. Cutting in rounds follows the field's practice (at most about a third
per round, iterating prune and distill); whether it beats one cut at equal
total budget is not measured here.
"""

import json
import os
import re

from keras_guide import _files
from keras_guide.workflows import shapes as shapes_lib

TABLE_TEXT = "ladder.md"
TABLE_FILE = "ladder.json"


def _kind_and_value(size):
    """`("share", 0.5)` for `"50%"`, `("count", 3e7)` for `"30M"`."""
    raw = str(size).strip().lower().replace("_", "")
    if "=" in raw:
        raise ValueError(
            "--size: a ladder takes shares ('50%') or parameter counts ('30M'), "
            f"not shapes. Received: {size!r}"
        )
    if raw.endswith("%"):
        return "share", float(raw[:-1])
    # A count, checked as `compress` checks one (against no teacher yet).
    return "count", float(shapes_lib.parse_parameter_count(raw, float("inf")))


def check_sizes(sizes):
    """Checks a ladder's sizes before anything is loaded or written.

    Raises:
        ValueError: a shape among several sizes, shares mixed with counts,
            or sizes that do not fall strictly rung by rung.
    """
    if len(sizes) < 2:
        return
    parsed = [_kind_and_value(size) for size in sizes]
    if len({kind for kind, _ in parsed}) > 1:
        raise ValueError(
            "--size: give a ladder's sizes all as shares ('50% 25%') or all as "
            f"counts ('60M 30M'). Received: {' '.join(sizes)}"
        )
    values = [value for _, value in parsed]
    if any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError(
            "--size: each rung of a ladder is smaller than the one before (each "
            f"is distilled from it). Received: {' '.join(sizes)}"
        )


def rung_folders(out, sizes):
    """The run folder of each size: `out` itself for one size."""
    if len(sizes) == 1:
        return [out]
    return [
        os.path.join(
            out,
            f"rung{i + 1}-"
            + re.sub(r"[^0-9A-Za-z.]+", "", str(size).replace("%", "pct")),
        )
        for i, size in enumerate(sizes)
    ]


def target(size, first_teacher_parameters):
    """A rung's size as a parameter count of the first teacher (`--size` of
    the rung's own `compress`, whose teacher is the previous student)."""
    return str(shapes_lib.parse_parameter_count(size, first_teacher_parameters))


def _perplexity(report):
    """`(context, perplexity)` of the student at the shortest context
    llama.cpp measured in its report, or `None`."""
    contexts = (report.get("llama_perplexity") or {}).get("contexts", {})
    measured = [
        (int(c), f["student"]["perplexity"])
        for c, f in contexts.items()
        if "student" in f
    ]
    return min(measured) if measured else None


def _size(count):
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def write_table(out, rungs, first_teacher):
    """Writes `out/ladder.md` and `out/ladder.json`; returns the Markdown.

    Args:
        out: the ladder's folder.
        rungs: `[(size, folder, report)]` in order.
        first_teacher: `{"name", "parameters", "loss"}` of the given teacher
            (its held-out loss from the first rung's report).
    """
    rows = []
    for size, folder, report in rungs:
        files = [p for p in report["outputs"] if p.endswith(".gguf")]
        rows.append(
            {
                "size": size,
                "folder": folder,
                "parameters": report["student"]["parameters"],
                "share": report["student"]["parameters"] / first_teacher["parameters"],
                "sizes": report["student"]["sizes"],
                "held_out_loss": report["evaluation"]["student_loss"],
                "teacher_loss": report["evaluation"]["teacher_loss"],
                "llama_cpp_perplexity": _perplexity(report),
                "gguf": files[0] if files else None,
                "gguf_bytes": os.path.getsize(files[0]) if files else None,
            }
        )
    lines = [
        f"# Ladder from {first_teacher['name']}",
        "",
        f"The teacher: {first_teacher['parameters']:,} parameters, held-out "
        f"loss {first_teacher['loss']:.3f} nats/token. Each rung is "
        "distilled from the one above it.",
        "",
        "| rung | --size | parameters | share | shape | held-out loss "
        "(its teacher's) | llama.cpp PPL (context) | .gguf |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(rows):
        shape = shapes_lib.Shape(row["sizes"], row["parameters"]).describe()
        ppl = row["llama_cpp_perplexity"]
        gguf = (
            f"{os.path.relpath(row['gguf'], out)} ({_size(row['gguf_bytes'])})"
            if row["gguf"]
            else ""
        )
        lines.append(
            f"| {i + 1} | {row['size']} | {row['parameters']:,} | "
            f"{row['share']:.1%} | {shape} | {row['held_out_loss']:.3f} "
            f"({row['teacher_loss']:.3f}) | "
            f"{'' if ppl is None else f'{ppl[1]:.2f} ({ppl[0]:,})'} | {gguf} |"
        )
    text = "\n".join(lines) + "\n"
    _files.write_text(os.path.join(out, TABLE_TEXT), text)
    _files.write_text(
        os.path.join(out, TABLE_FILE),
        json.dumps({"teacher": first_teacher, "rungs": rows}, indent=1) + "\n",
    )
    return text
