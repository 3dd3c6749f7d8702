"""GUIDE's ablation: the same student trained from different starting points.

Every variant trains the same student architecture with the same data order,
number of steps, batch size and optimizer; only the initialization (random,
uniform weight selection, GUIDE) and the loss (cross-entropy alone, or with
knowledge distillation from the teacher's logits) change. Quality is the
mean held-out token cross-entropy `L` (docs/method.md §7) and

    gap_closed = (L_base − L) / (L_base − L_teacher),

with `L_base` the mean over the random-initialization seeds
(`keras_guide.callbacks.gap_closed`).

`run_ablation` works on any teacher/student pair of a KerasHub causal-LM
family; `keras-guide demo` feeds it the shipped teacher and the plays,
`keras-guide compare` the user's own.
"""

import csv
import dataclasses
import json
import math
import os

import numpy as np

from keras_guide import _files
from keras_guide.callbacks import gap_closed
from keras_guide.distillation import Distiller
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.guide import guide
from keras_guide.guide import weight_selection
from keras_guide.workflows import run
from keras_guide.workflows import training

# What `write_outputs` writes into its `out_dir`: a previous run is any of them.
OUTPUTS = ("results.json", "results.csv", "ablation.png", "best_student.keras")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the ablation.

    Attributes:
        name: row label.
        init: `"random"`, `"selection"` (uniform weight selection, Xu et al.
            2023) or `"guide"`.
        guide_options: keyword arguments of `keras_guide.guide` (for `"guide"`).
        kd: train with the `Distiller` (cross-entropy + KD) instead of
            cross-entropy alone.
        seed: the student's initialization seed (random weights).
    """

    name: str
    init: str = "random"
    guide_options: tuple = ()
    kd: bool = False
    seed: int = 0

    @property
    def is_baseline(self):
        return self.init == "random" and not self.kd


# The demo's KD variants distil at τ = 2 (the Distiller's default was 2 when
# their tables were measured; it is 1 since the real-teacher study).
DEMO_KD_TEMPERATURE = 2.0

DEFAULT_VARIANTS = (
    Variant("random init (seed 0)", seed=0),
    Variant("random init (seed 1)", seed=1),
    Variant("KD only", kd=True),
    Variant("uniform selection (Xu et al.)", init="selection"),
    Variant(
        "GUIDE blocks=first (paper)", init="guide", guide_options=(("blocks", "first"),)
    ),
    Variant("GUIDE blocks=all", init="guide", guide_options=(("blocks", "all"),)),
    Variant("GUIDE (defaults) + KD", init="guide", kd=True),
)


@dataclasses.dataclass
class Settings:
    """What every variant shares.

    Attributes:
        num_steps: training steps per variant.
        batch_size: windows per step.
        peak_learning_rate, warmup_steps, weight_decay, schedule: the AdamW
            optimizer and its learning-rate schedule (`training.adamw`:
            `"cosine"` or a callable), identical for every variant. The
            KD variants distil at τ = 2, α = 0.5 (`DEMO_KD_TEMPERATURE`: the
            temperature the demo's tables were measured at).
        data_seed: fixes the order of the training batches.
        curve_points: held-out evaluations on the curve subset per run.
        curve_windows: size of the fixed held-out subset for the curves.
        eval_windows: held-out windows for the final loss (None: all).
    """

    num_steps: int = 300
    batch_size: int = 16
    peak_learning_rate: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    schedule: object = "cosine"
    data_seed: int = 0
    curve_points: int = 6
    curve_windows: int = 64
    eval_windows: int = None


@dataclasses.dataclass
class Result:
    name: str
    init: str
    kd: bool
    seed: int
    loss: float
    step0_loss: float
    train_seconds: float
    tokens: int
    history: dict
    gap_closed: float = float("nan")
    guide_report: str = ""

    @property
    def is_baseline(self):
        return self.init == "random" and not self.kd

    @property
    def perplexity(self):
        return math.exp(self.loss)

    @property
    def tokens_per_second(self):
        return self.tokens / self.train_seconds if self.train_seconds else float("nan")


def initialize(variant, teacher, student):
    """Initializes `student` as `variant` says; returns the report or None."""
    if variant.init == "random":
        return None
    if variant.init == "selection":
        return weight_selection(teacher, student)
    if variant.init == "guide":
        return guide(teacher, student, **dict(variant.guide_options))
    raise ValueError(
        "`init` must be 'random', 'selection' or 'guide'. "
        f"Received: init={variant.init!r}"
    )


def trainer(variant, teacher, student, settings):
    """The compiled model that trains `student`: itself (cross-entropy), or a
    `Distiller` for a KD variant."""
    optimizer = training.adamw(
        settings.peak_learning_rate,
        settings.num_steps,
        settings.warmup_steps,
        settings.weight_decay,
        schedule=settings.schedule,
    )
    if not variant.kd:
        student.compile(optimizer=optimizer, loss=training.causal_lm_loss())
        return student
    distiller = Distiller(
        teacher,
        student,
        **run.distiller_arguments({"temperature": DEMO_KD_TEMPERATURE}),
    )
    distiller.compile(optimizer=optimizer)
    return distiller


def run_variant(
    variant,
    teacher,
    make_student,
    train_batches,
    eval_batches,
    curve_batches,
    settings,
    verbose=True,
):
    """Initializes, trains and evaluates one variant; returns a `Result`."""
    student = make_student(variant.seed)
    report = initialize(variant, teacher, student)
    step0 = heldout_cross_entropy(student, eval_batches)
    model = trainer(variant, teacher, student, settings)
    eval_every = max(1, settings.num_steps // max(1, settings.curve_points))
    history = training.train(
        model,
        train_batches,
        settings.num_steps,
        evaluate=lambda _: heldout_cross_entropy(student, curve_batches),
        eval_every=eval_every,
        verbose=verbose,
        label=f"[{variant.name}]",
    )
    loss = heldout_cross_entropy(student, eval_batches)
    if verbose:
        print(
            f"  held-out loss {step0:.3f} -> {loss:.3f} "
            f"({history['train_seconds']:.0f}s)"
        )
    result = Result(
        name=variant.name,
        init=variant.init,
        kd=variant.kd,
        seed=variant.seed,
        loss=loss,
        step0_loss=step0,
        train_seconds=history["train_seconds"],
        tokens=history["tokens"],
        history=history,
        guide_report=str(report) if report is not None else "",
    )
    return result, student


def run_ablation(
    teacher,
    make_student,
    train_batches,
    eval_batches,
    settings,
    variants=DEFAULT_VARIANTS,
    curve_batches=None,
    verbose=True,
    teacher_loss=None,
):
    """Runs every variant and fills in `gap_closed`.

    Args:
        teacher: a trained causal LM (KerasHub task model).
        make_student: callable `seed -> built student` (random init).
        train_batches: a `text.Batches` (the same order for every variant).
        eval_batches: list of held-out `(x, y, sample_weight)` batches.
        settings: `Settings`.
        variants: the rows.
        curve_batches: held-out subset for the learning curves (default:
            `eval_batches`).
        teacher_loss: the teacher's held-out loss (computed if None).

    Returns:
        `(results, best_student, teacher_loss)`, where `best_student` is the
        student of the row with the lowest held-out loss.
    """
    if not any(v.is_baseline for v in variants):
        raise ValueError("`variants` need at least one random-init, CE-only baseline.")
    if teacher_loss is None:
        teacher_loss = heldout_cross_entropy(teacher, eval_batches)
    curve_batches = curve_batches or eval_batches
    results, best, best_loss = [], None, float("inf")
    for variant in variants:
        result, student = run_variant(
            variant,
            teacher,
            make_student,
            train_batches,
            eval_batches=eval_batches,
            curve_batches=curve_batches,
            settings=settings,
            verbose=verbose,
        )
        results.append(result)
        if result.loss < best_loss:
            best, best_loss = student, result.loss
    base = float(np.mean([r.loss for r in results if r.is_baseline]))
    for result in results:
        result.gap_closed = gap_closed(result.loss, base, teacher_loss)
    return results, best, teacher_loss


def format_table(results, teacher_loss, base_loss=None):
    """Returns the results as a plain-text table (one row per variant)."""
    if base_loss is None:
        base_loss = float(np.mean([r.loss for r in results if r.is_baseline]))
    header = (
        f"{'variant':<32} {'held-out':>9} {'ppl':>8} {'gap closed':>10} "
        f"{'step 0':>8} {'time s':>7} {'tok/s':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        gap = "" if math.isnan(r.gap_closed) else f"{100 * r.gap_closed:.1f}%"
        lines.append(
            f"{r.name:<32} {r.loss:>9.4f} {r.perplexity:>8.2f} {gap:>10} "
            f"{r.step0_loss:>8.3f} {r.train_seconds:>7.1f} {r.tokens_per_second:>7.0f}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'random-init mean (L_base)':<32} {base_loss:>9.4f} "
        f"{math.exp(base_loss):>8.2f}"
    )
    lines.append(f"{'teacher':<32} {teacher_loss:>9.4f} {math.exp(teacher_loss):>8.2f}")
    return "\n".join(lines)


def result_writers(results, teacher_loss, meta=None):
    """`{file name: write(path)}` for `results.json` and `results.csv`."""
    rows = []
    for r in results:
        rows.append(
            {
                "variant": r.name,
                "init": r.init,
                "kd": r.kd,
                "seed": r.seed,
                "held_out_loss": r.loss,
                "perplexity": r.perplexity,
                "gap_closed": r.gap_closed,
                "step0_loss": r.step0_loss,
                "train_seconds": r.train_seconds,
                "tokens": r.tokens,
                "tokens_per_second": r.tokens_per_second,
            }
        )

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    payload = {
        "teacher_loss": teacher_loss,
        "rows": rows,
        "curves": {r.name: r.history for r in results},
        "guide_reports": {r.name: r.guide_report for r in results if r.guide_report},
        **(meta or {}),
    }

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1, default=float)

    return {"results.json": write_json, "results.csv": write_csv}


def check_output(out_dir, overwrite=False, inputs=None):
    """Checks `out_dir` before anything loads: `run.check_run_folder` for the
    ablation's `OUTPUTS` (a run that cannot resume: a previous one is
    replaced as the new one writes its files, only with `overwrite`).

    Args:
        out_dir: str. The output folder.
        overwrite: bool. Replace a previous run's files. Defaults to `False`.
        inputs: dict. `{option: path}` of the models the run reads, which
            `out_dir` must neither write over nor hold. Defaults to `None`.

    Returns:
        The previous run's files found in `out_dir`.

    Raises:
        ValueError: naming `out_dir` and what to pass instead.
    """
    return run.check_run_folder(
        out_dir,
        run.folder_outputs(out_dir, OUTPUTS),
        inputs,
        resume=None,
        overwrite=overwrite,
    )


def write_outputs(
    results, best, teacher_loss, out_dir, meta=None, title="GUIDE ablation"
):
    """Writes `results.json`, `results.csv`, `ablation.png` (titled `title`)
    and `best_student.keras` into `out_dir`, each atomically.

    A file that cannot be written does not stop the others (the results
    first: they are what the run computed).

    Raises:
        OSError: naming each file that could not be written and why.
    """
    os.makedirs(out_dir, exist_ok=True)
    writers = result_writers(results, teacher_loss, meta)
    writers["ablation.png"] = lambda tmp: plot(results, teacher_loss, tmp, title=title)
    writers["best_student.keras"] = best.save
    failed = []
    for name, write in writers.items():
        path = os.path.join(out_dir, name)
        try:
            _files.write_atomic(path, write)
        except OSError as error:
            failed.append(f"{path} ({error.strerror or error})")
    if failed:
        written = [
            n for n in writers if os.path.join(out_dir, n) not in " ".join(failed)
        ]
        raise OSError(
            f"Could not write {'; '.join(failed)}. Written: "
            f"{', '.join(written) or 'nothing'}; the results table was printed "
            "above."
        )


def plot(results, teacher_loss, path, title="GUIDE ablation"):
    """Writes learning curves (held-out subset) and gap-closed bars to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    for r in results:
        style = "--" if r.is_baseline else "-"
        left.plot(
            r.history["eval_steps"],
            r.history["eval_loss"],
            style,
            marker="o",
            ms=3,
            label=r.name,
        )
    left.axhline(teacher_loss, color="k", lw=1, ls=":", label="teacher")
    left.set_xlabel("training step")
    left.set_ylabel("held-out loss (curve subset, nats)")
    left.text(
        0.01,
        0.01,
        "step-0 losses: see the table",
        transform=left.transAxes,
        fontsize=7,
        color="gray",
    )
    after_start = [
        loss
        for r in results
        for loss in (r.history["eval_loss"][1:] or r.history["eval_loss"])
    ]
    low = min(after_start + [teacher_loss])
    left.set_ylim(low - 0.1, max(after_start) + 0.3)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title(title)
    names = [r.name for r in results]
    gaps = [100 * (0.0 if math.isnan(r.gap_closed) else r.gap_closed) for r in results]
    colors = ["tab:gray" if r.is_baseline else "tab:blue" for r in results]
    right.barh(range(len(names)), gaps, color=colors)
    right.set_yticks(range(len(names)), names, fontsize=8)
    right.invert_yaxis()
    right.axvline(0, color="k", lw=0.8)
    right.set_xlabel("gap closed to the teacher (%)")
    for i, (g, r) in enumerate(zip(gaps, results)):
        right.text(g, i, f" {g:.0f}% ({r.loss:.3f})", va="center", fontsize=8)
    right.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
