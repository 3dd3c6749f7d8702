"""`compress`'s choice of the student's shape: candidates guided from one
calibration pass of the teacher, compared right after initialization or
after the run's first steps (`--search-steps`)."""

import os
import shutil
import time

import keras
import numpy as np

from keras_guide.adapters import backbone_of
from keras_guide.distribution import check_sharding
from keras_guide.distribution import paused_distribution
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.guide import build_student
from keras_guide.guide import guide
from keras_guide.guide import options as options_lib
from keras_guide.workflows import checkpoint
from keras_guide.workflows import distill as distill_lib
from keras_guide.workflows import shapes as shapes_lib
from keras_guide.workflows import text

# Each candidate's run of the first steps (`--search-steps`), removed after.
SEARCH_DIR = "search"
INITIAL_FILE = "initial_student.keras"
# How a candidate starts: guided from the teacher, or its family's own
# initializers (`compress --init random`, the baseline).
INITS = ("guide", "random")
# `--search-steps auto`: where the trained search was measured to pay (README,
# "Peers"; RESULTS section 10). At 53 % of SmolLM2, where a student at the
# teacher's full width keeps 12 of its 30 blocks, 30 of 150 steps chose that
# shape at both seeds and ended level with ShortGPT, ahead of the shape chosen
# right after initialization at both; at 21 %, where one block fits, it was
# not better. So: a fifth of the run's steps, over 2 candidates besides the
# full width, where the full-width student keeps at least a third of the
# teacher's blocks, else none.
AUTO_STEPS_SHARE = 1 / 5
AUTO_FULL_WIDTH_SHARE = 1 / 3
AUTO_CANDIDATES = 2


def _calibration(train, tokens):
    """The first windows of the training text holding `tokens` tokens."""
    windows, mask = train
    counts = np.cumsum(mask.sum(1))
    rows = int(np.searchsorted(counts, tokens)) + 1
    if counts[-1] < tokens:
        raise ValueError(
            f"The training text has {int(counts[-1])} tokens; calibration needs "
            f"{tokens} (--calibration-tokens). Pass more --text or ask for fewer."
        )
    return windows[:rows], mask[:rows]


def search(
    teacher,
    train,
    target=None,
    shape=None,
    calibration_tokens=4096,
    score_windows=8,
    max_candidates=5,
    guide_options=None,
    verbose=True,
    train_candidate=None,
    seen_rows=(),
    limits=None,
    init="guide",
    seed=0,
):
    """Chooses the student: candidates guided from one calibration pass and
    scored on the training windows after the calibration ones.

    `guide_options` are keyword arguments of `keras_guide.guide`: those left
    out take the data-aware recipe; if none of them uses calibration text
    (a data-free guide), the teacher is not run on it.

    With `train_candidate`, a callable `(index, student) -> folder` that
    trains a guided candidate in place (the run's first steps), candidates
    are compared after it, on windows those steps did not see (`seen_rows`:
    the indices of `train` they used); the loss right after initialization
    is recorded too.

    With `limits` (`RuntimeLimits`), only candidates whose `.gguf` meets them
    in llama.cpp are guided and compared.

    With `init="random"` the candidates are not guided: each keeps its
    family's own initializers, drawn from `seed` (the baseline GUIDE is
    measured against); `guide_options` must then be empty.

    Returns:
        `(student, record)`: the chosen, guided (or trained) student and what
        was tried (`candidates` with sizes, parameters, score, seconds and,
        when trained, `score_after_init` and `folder`; `chosen`;
        `calibration` tokens and seconds).
    """
    guide_options = dict(guide_options or {})
    check_init(init, guide_options)
    calibrated = init == "guide" and options_lib.takes_calibration(guide_options)
    tokens, mask = _calibration(train, calibration_tokens)
    rest = _scoring_windows(train, len(tokens), seen_rows)
    started = time.perf_counter()
    stats = _teacher_statistics(teacher, tokens, calibrated)
    calibration_seconds = time.perf_counter() - started
    started = time.perf_counter()
    candidates, measured = _candidates(
        teacher, target, shape, max_candidates, train_candidate is not None, limits
    )
    shape_seconds = time.perf_counter() - started
    scoring = text.eval_batches(*rest, batch_size=2, max_windows=score_windows)
    start = _start(teacher, stats, init, guide_options, seed)
    tried, best = [], None
    for candidate in candidates:
        row, student, report = _guide_candidate(
            candidate,
            start,
            scoring,
            train_candidate,
            len(tried),
            verbose,
        )
        tried.append(row)
        if best is None or row["score"] < best[0]["score"]:
            best = (row, student, report)
        else:
            del student
    row, student, report = best
    record = {
        "candidates": tried,
        "chosen": row,
        "calibration": {
            "tokens": int(stats.tokens) if calibrated else 0,
            "seconds": calibration_seconds,
        },
        "shape_search_seconds": shape_seconds,
        **({"runtime_limits": measured} if limits is not None else {}),
        "score_windows": int(min(score_windows, len(rest[0]))),
        "recipe": _recipe(report),
    }
    return student, record


def auto_search_steps(teacher, target, num_steps):
    """`--search-steps auto`: `(steps, why)`. A fifth of `num_steps` where
    a student at the teacher's full width keeps at least a third of its
    blocks within `target` parameters (a depth-pruned shape that starts
    worst and trains fastest, which only trained candidates reveal), else 0;
    0 for a given shape (`target` None), which has no search, and where a
    fifth is under 2 steps: the warm-up's first step has a rate of 0, so one
    step would train nothing."""
    if target is None:
        return 0, "the shape is given"
    steps = int(num_steps * AUTO_STEPS_SHARE)
    if steps < 2:
        return 0, f"a fifth of the run's {num_steps} steps is under 2"
    # Counted on reference models built off the mesh, as the shapes are.
    with paused_distribution():
        blocks, total = shapes_lib.full_width_blocks(teacher, target)
    if blocks < AUTO_FULL_WIDTH_SHARE * total:
        return 0, f"a full-width student keeps only {blocks} of the {total} blocks"
    return steps, f"a full-width student keeps {blocks} of the {total} blocks"


def check_init(init, guide_options):
    """`init` is one of `INITS`; a random start takes no GUIDE option."""
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}. Received: init={init!r}")
    if init == "random" and guide_options:
        raise ValueError(
            "A random start is not guided, so it takes no GUIDE option. "
            f"Received: init='random' with {sorted(guide_options)}"
        )


def _recipe(report):
    """The choices `guide` made for the chosen student (`GuideReport`; `None`
    for a random start), as the run's report records them."""
    if report is None:
        return {"guide": {}, "guide_recipe": "random init (not guided)"}
    return {
        "guide": {
            k: report.options[k]
            for k in ("projection", "select", "layer_map", "norm", "rescale")
        },
        "guide_recipe": report.recipe,
    }


def _scoring_windows(train, calibration_rows, seen_rows):
    """The training windows after the calibration ones that the first steps
    (`seen_rows`) did not use: the candidates are scored on them."""
    kept = [
        i for i in range(calibration_rows, len(train[0])) if i not in set(seen_rows)
    ]
    rest = train[0][kept], train[1][kept]
    if len(rest[0]) < 1:
        raise ValueError(
            "The training text has no window left after the "
            "calibration text to score candidates on."
        )
    return rest


def _teacher_statistics(teacher, tokens, calibrated):
    """The `ActivationStatistics` of one pass of the teacher over `tokens`,
    or `None` for a data-free guide (the tokens are checked either way)."""
    from keras_guide import calibration as calibration_lib

    backbone = teacher.backbone if hasattr(teacher, "backbone") else teacher
    batches = calibration_lib.calibration_batches(
        tokens, list(backbone.input.keys()), backbone.vocabulary_size
    )
    if not calibrated:
        return None
    return calibration_lib.collect_statistics(teacher, batches)


def _candidates(teacher, target, shape, max_candidates, full_width, limits):
    """`(candidates, measured)`: the given `shape` alone, or the shapes of
    `target`'s size; those the active mesh divides; with `limits`, those
    llama.cpp finds within them (and each one's measurement)."""
    if shape is not None:
        candidates = [shape]
    else:
        # Shapes are read from models built off the mesh (a mesh of
        # `ModelParallel` may not divide a reference model's sizes).
        with paused_distribution():
            candidates = shapes_lib.candidate_shapes(
                teacher, target, max_candidates, full_width=full_width
            )
    candidates = _shardable(teacher, candidates)
    measured = []
    if limits is not None:
        candidates, measured = limits.keep(teacher, candidates)
    return candidates, measured


def _start(teacher, stats, init, guide_options, seed):
    """`sizes -> (student, GuideReport)`: a candidate built and guided from
    `stats`; or, `init="random"`, built with its family's own initializers
    drawn from `seed` (report `None`)."""

    def start(sizes):
        if init == "random":
            keras.utils.set_random_seed(int(seed))
            return build_student(teacher, **sizes), None
        student = build_student(teacher, **sizes)
        return student, guide(teacher, student, calibration=stats, **guide_options)

    return start


def _guide_candidate(candidate, start, scoring, train_candidate, index, verbose):
    """Starts one candidate (`_start`; with `train_candidate`, also trains
    its first steps) and scores it: `(row, student, report)`."""
    started = time.perf_counter()
    given = not isinstance(candidate, shapes_lib.Shape)
    sizes = candidate if given else candidate.sizes
    student, report = start(sizes)
    score = heldout_cross_entropy(student, scoring)
    parameters = shapes_lib.count_parameters(student) if given else candidate.parameters
    row = {
        "sizes": dict(sizes),
        "parameters": int(parameters),
        "score": float(score),
    }
    said = f"loss after init {score:.3f}"
    if train_candidate is not None:
        row["folder"] = train_candidate(index, student)
        row["score_after_init"] = row["score"]
        score = row["score"] = float(heldout_cross_entropy(student, scoring))
        said += f", after its first steps {score:.3f}"
    row["seconds"] = time.perf_counter() - started
    if verbose:
        print(
            f"  candidate {shapes_lib.Shape(sizes, parameters).describe()}: "
            f"{parameters:,} parameters, {said}"
        )
    return row, student, report


def first_steps(teacher, windows, out_dir, budget, training):
    """`search`'s `train_candidate` and `seen_rows` for `budget.search_steps`
    (none for 0): each candidate trains the run's first steps, with its
    recipe, in its own run folder `out_dir/search/candidate-N/`."""
    if not budget.search_steps:
        return {}
    batches = text.Batches(*windows[0], batch_size=budget.batch_size, seed=budget.seed)
    seen = {int(i) for step in range(budget.search_steps) for i in batches.rows(step)}

    def train_candidate(index, student):
        folder = os.path.join(out_dir, SEARCH_DIR, f"candidate-{index}")
        os.makedirs(folder, exist_ok=True)
        # The guided weights, which the chosen one's training starts from.
        checkpoint.write_atomic(os.path.join(folder, INITIAL_FILE), student.save)
        distill_lib.distill(
            teacher,
            student,
            windows,
            folder,
            overwrite=True,
            verbose=False,
            stop_step=budget.search_steps,
            **training,
        )
        return folder

    return {"train_candidate": train_candidate, "seen_rows": seen}


def continue_from_search(out_dir, record):
    """The chosen candidate's guided student; its checkpoint of the first
    steps becomes the run's, and the search's folders go."""
    folder = record["chosen"]["folder"]
    student = keras.saving.load_model(os.path.join(folder, INITIAL_FILE))
    target = checkpoint.checkpoint_dir(out_dir)
    if os.path.exists(target):
        shutil.rmtree(target)
    shutil.copytree(checkpoint.checkpoint_dir(folder), target)
    shutil.rmtree(os.path.join(out_dir, SEARCH_DIR))
    for row in record["candidates"]:
        row["folder"] = os.path.relpath(row["folder"], out_dir)
    return student


def _shardable(teacher, candidates):
    """The candidates whose weights the active `ModelParallel` mesh divides
    (all of them under any other distribution).

    Raises:
        ValueError: none is (the first one's reason, with the fix).
    """
    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.ModelParallel):
        return candidates
    kept, reason = [], None
    for candidate in candidates:
        sizes = (
            candidate.sizes if isinstance(candidate, shapes_lib.Shape) else (candidate)
        )
        # The backbone alone: a task model cannot be built without memory.
        with paused_distribution(), keras.StatelessScope():
            plan = build_student(backbone_of(teacher), **sizes)
        try:
            check_sharding(distribution, {"student": plan})
            kept.append(candidate)
        except ValueError as error:
            reason = reason or str(error)
    if not kept:
        raise ValueError(
            f"No student shape of this size fits --model-parallel's mesh: {reason}"
        )
    return kept


class RuntimeLimits:
    """`--max-memory` and `--min-speedup`, measured by llama.cpp on each
    candidate's `.gguf` (written untrained: a file's speed and memory do not
    depend on its values) against the teacher's file, on this machine.

    Args:
        teacher_path: str. The teacher's `.gguf` file.
        gguf_dtype: str. The type the student's file will have (the first of
            `--gguf-dtype`): speed and memory depend on it.
        max_memory_mib: float or None. The most peak resident memory, in MiB,
            of a llama.cpp process running the student. Defaults to `None`
            (no limit).
        min_speedup: float or None. The least ratio of the student's
            generation speed to the teacher's. Defaults to `None` (no limit).
    """

    def __init__(self, teacher_path, gguf_dtype, max_memory_mib=None, min_speedup=None):
        self.teacher_path = teacher_path
        self.gguf_dtype = gguf_dtype
        self.max_memory_mib = max_memory_mib
        self.min_speedup = min_speedup

    def _excess(self, row):
        """How far a measured candidate is from the limits (1 or less: met)."""
        ratios = [1.0]
        if self.max_memory_mib is not None:
            ratios.append(row["peak_rss_mib"] / self.max_memory_mib)
        if self.min_speedup is not None:
            ratios.append(self.min_speedup / max(row["speedup"], 1e-9))
        return max(ratios)

    def describe(self):
        given = []
        if self.max_memory_mib is not None:
            given.append(f"--max-memory {self.max_memory_mib:g} MiB")
        if self.min_speedup is not None:
            given.append(f"--min-speedup {self.min_speedup:g}")
        return " and ".join(given)

    def keep(self, teacher, candidates):
        """`(kept, measured)`: the candidates that meet the limits, and each
        candidate's measurement (`sizes`, `peak_rss_mib`,
        `generate_tokens_per_s`, `speedup`, `file_mib`, `meets`).

        Raises:
            ValueError: none meets them (naming the closest and its numbers).
        """
        import tempfile

        from keras_guide.gguf import runtime
        from keras_guide.workflows import export as export_lib

        teacher_speed = runtime.speed(self.teacher_path)["generate_tokens_per_s"]
        kept, measured = [], []
        with tempfile.TemporaryDirectory(prefix="keras-guide-candidate-") as folder:
            for index, candidate in enumerate(candidates):
                sizes = (
                    candidate.sizes
                    if isinstance(candidate, shapes_lib.Shape)
                    else (candidate)
                )
                with paused_distribution():
                    student = build_student(teacher, **sizes)
                    written = export_lib.export(
                        student,
                        os.path.join(folder, f"candidate-{index}"),
                        ["gguf"],
                        gguf_dtype=self.gguf_dtype,
                        metadata_from=self.teacher_path,
                    )
                del student
                speed = runtime.speed(written["gguf"])
                row = {
                    "sizes": dict(sizes),
                    "peak_rss_mib": speed["peak_rss_mib"],
                    "generate_tokens_per_s": speed["generate_tokens_per_s"],
                    "speedup": speed["generate_tokens_per_s"] / teacher_speed,
                    "file_mib": speed["file_mib"],
                }
                row["meets"] = self._excess(row) <= 1.0
                measured.append(row)
                if row["meets"]:
                    kept.append(candidate)
        if not kept:
            closest = min(measured, key=self._excess)
            raise ValueError(
                f"No candidate student meets {self.describe()} in llama.cpp "
                "here: the closest, "
                f"{shapes_lib.Shape(closest['sizes'], 0).describe()}, takes "
                f"{closest['peak_rss_mib']:.0f} MiB and generates "
                f"{closest['speedup']:.2f}x the teacher's tokens/s. Ask for a "
                "smaller --size, a smaller --gguf-dtype, or looser limits."
            )
        return kept, measured
