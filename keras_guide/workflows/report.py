"""`compress`'s report: `report.json`, `report.md` and the learning curve."""

import json
import os

from keras_guide import _files
from keras_guide.workflows import checkpoint

REPORT_FILE = "report.json"
REPORT_TEXT = "report.md"
CURVE_FILE = "curve.png"


def plot(history, teacher_loss, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(history["train_steps"], history["train_loss"], label="training loss")
    axis.plot(
        history["eval_steps"],
        history["eval_loss"],
        "o-",
        label="held-out loss (student)",
    )
    axis.axhline(teacher_loss, color="k", linestyle="--", label="teacher, held out")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.legend()
    figure.tight_layout()
    _files.write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def write_report(out_dir, report):
    checkpoint.write_json(os.path.join(out_dir, REPORT_FILE), report)
    _files.write_text(os.path.join(out_dir, REPORT_TEXT), render(report))


def render(report):
    """The report as Markdown."""
    return "\n".join(
        _comparison_rows(report)
        + _perplexity_rows(report.get("llama_perplexity"))
        + _gguf_types_rows(report)
        + _setting_lines(report)
        + _shape_section(report["search"])
        + _recipe_section(report["recipe"])
        + _time_section(report)
    )


def _comparison_rows(report):
    """The title and the table of teacher against student: size, held-out
    loss and agreement, llama.cpp's speed and memory, and the student's
    `.gguf` against the Keras student."""
    e = report["evaluation"]
    lines = [
        f"# {report['teacher'].get('name', report['teacher']['path'])} compressed",
        "",
        "| | teacher | student |",
        "|---|---|---|",
        f"| parameters | {report['teacher']['parameters']:,} | "
        f"{report['student']['parameters']:,} "
        f"({report['student']['parameters'] / report['teacher']['parameters']:.1%}) |",
        f"| held-out loss (nats/token) | {e['teacher_loss']:.3f} | "
        f"{e['student_loss']:.3f} |",
        f"| perplexity | {e['teacher_perplexity']:.2f} | "
        f"{e['student_perplexity']:.2f} |",
        f"| KL(teacher ‖ student), nats/token | | {e['kl']:.3f} |",
        f"| top-1 agreement with the teacher | | {e['top1_agreement']:.1%} |",
    ]
    speed = report.get("llama_cpp")
    parity = (speed or {}).get("parity") or {}
    if speed and "error" in speed:
        lines.append(f"| llama.cpp speed | not measured: {speed['error']} | |")
    elif speed:
        t, s = speed["teacher"], speed["student"]
        lines += [
            f"| llama.cpp prompt tokens/s | {t['prompt_tokens_per_s']:.0f} | "
            f"{s['prompt_tokens_per_s']:.0f} |",
            f"| llama.cpp generated tokens/s | {t['generate_tokens_per_s']:.1f} | "
            f"{s['generate_tokens_per_s']:.1f} |",
            f"| llama.cpp peak memory (MiB) | {t['peak_rss_mib']:.0f} | "
            f"{s['peak_rss_mib']:.0f} |",
            f"| file (MiB) | {t['file_mib']:.0f} | {s['file_mib']:.0f} |",
        ]
    if "kl" in parity:
        lines.append(
            f"| the student's .gguf in llama.cpp vs the Keras student | | KL "
            f"{parity['kl']:.2g} nats/token, top-1 {parity['top1_agreement']:.1%} "
            f"({parity['tokens']} tokens) |"
        )
    return lines


def _setting_lines(report):
    """The held-out text, and the devices the run used and how."""
    devices = report.get("devices", 1)
    groups = devices // report.get("model_parallel", 1)
    how = (
        f" (model parallel: keras.distribution.ModelParallel, each weight "
        f"split over {devices // groups} of them and each batch over "
        f"{groups} groups)"
        if groups < devices
        else " (data parallel: keras.distribution.DataParallel, each batch split "
        "over them)"
        if devices > 1
        else ""
    )
    return [
        "",
        f"Held-out text: {report['evaluation']['tokens']:,} tokens "
        f"({report['held_out']}).",
        "",
        f"Devices: {devices}{how}"
        + (
            f", in {report['processes']} processes (keras.distribution.initialize)"
            if report.get("processes", 1) > 1
            else ""
        ),
    ]


def _shape_section(search):
    """The candidate shapes, each one's loss, and which won and why."""
    steps = search.get("search_steps", 0)
    lines = [
        "",
        "## Shape",
        "",
        "| candidate | parameters | loss after init | "
        + (f"after {steps} steps | " if steps else "")
        + "seconds |",
        "|---|---|---|" + ("---|" if steps else "") + "---|",
    ]
    for row in search["candidates"]:
        mark = " **(chosen)**" if row == search["chosen"] else ""
        described = ", ".join(f"{k}={v}" for k, v in row["sizes"].items())
        scores = (
            f"{row['score_after_init']:.3f} | {row['score']:.3f}"
            if steps
            else f"{row['score']:.3f}"
        )
        lines.append(
            f"| {described}{mark} | {row['parameters']:,} | {scores} | "
            f"{row['seconds']:.1f} |"
        )
    return lines + [
        "",
        (
            f"The lowest cross-entropy after the run's first {steps} steps (on "
            "training windows neither the calibration nor those steps used) "
            "wins; the chosen student continues from them."
            if steps
            else "The lowest cross-entropy right after guided initialization "
            "(on training windows the calibration did not use) wins."
        ),
    ]


def _recipe_section(recipe):
    return ["", "## Recipe", "", "```", json.dumps(recipe, indent=1), "```"]


def _time_section(report):
    """Each stage's seconds and share, then the files written."""
    lines = [
        "",
        "## Where the time went",
        "",
        "| stage | seconds | share |",
        "|---|---|---|",
    ]
    total = sum(report["seconds"].values())
    for stage, seconds in report["seconds"].items():
        lines.append(f"| {stage} | {seconds:.1f} | {seconds / total:.1%} |")
    return lines + ["", "Outputs: " + ", ".join(report["outputs"]), ""]


def _gguf_types_rows(report):
    """A table of the student's GGUF files where there are several: size,
    llama.cpp speed and memory, and the protocol's figures at its first
    context."""
    speeds = report.get("llama_cpp") or {}
    files = [name for name in speeds if name.startswith("student")]
    if len(files) < 2:
        return []
    contexts = (report.get("llama_perplexity") or {}).get("contexts", {})
    context, figures = next(
        ((c, f) for c, f in contexts.items() if "skipped" not in f), (None, {})
    )
    lines = [
        "",
        "## The student's GGUF files",
        "",
        f"| file | MiB | prompt / generated tokens/s | peak MiB | PPL, KL from "
        f"the teacher, same top p ({context}-token chunks) |",
        "|---|---|---|---|---|",
    ]
    for name in files:
        speed, f = speeds[name], figures.get(name)
        quality = (
            f"{f['perplexity']:.2f}, {f['vs_base']['kl']:.3f}, "
            f"{f['vs_base']['same_top']:.1%}"
            if f
            else ""
        )
        label = "student.gguf" if name == "student" else f"{name}.gguf"
        lines.append(
            f"| {label} | {speed['file_mib']:.1f} | "
            f"{speed['prompt_tokens_per_s']:.0f} / "
            f"{speed['generate_tokens_per_s']:.1f} | "
            f"{speed['peak_rss_mib']:.0f} | {quality} |"
        )
    return lines


def _perplexity_rows(measured):
    """The report's rows for `llama-perplexity`'s protocol."""
    if not measured:
        return []
    if "error" in measured:
        return [
            f"| perplexity, llama-perplexity's protocol | not measured: "
            f"{measured['error']} | |"
        ]
    where, lines, kl = measured["runtime"], [], None
    for context, figures in measured["contexts"].items():
        label = f"{where} perplexity, {int(context):,}-token chunks"
        if "skipped" in figures:
            lines.append(f"| {label} | not measured: {figures['skipped']} | |")
            continue

        def shown(f):
            return (
                f"{f['perplexity']:.2f} ± {f['perplexity_error']:.2f} "
                f"({f['nll']:.3f} nats)"
            )

        lines.append(
            f"| {label} | {shown(figures['teacher'])} | {shown(figures['student'])} |"
        )
        kl = kl or (context, figures)
    if kl:
        context, figures = kl
        for name, f in figures.items():
            if name == "teacher":
                continue
            k, what = f["vs_base"], name.replace("student", "the student", 1)
            size = "" if name == "student" else f"; PPL {f['perplexity']:.2f}"
            lines.append(
                f"| {where} KL of {what} from the teacher, same top p "
                f"({int(context):,}-token chunks) | | {k['kl']:.3f} ± "
                f"{k['kl_error']:.3f}, {k['same_top']:.1%}{size} |"
            )
    return lines
