"""What the loss right after initialization measures: GUIDE's width ratios,
the output's scale, and each norm's share of its input's energy.

On Gemma 3 at a quarter of its size, GUIDE's default start (the width ratios
`√(d_T/d_S)` on the norm gains and the √d-scaled table) is 3.5 nats worse
right after initialization than Minitron-style slicing (`--no-rescale`), yet
ends level with it after 50 KD steps over two seeds (0.075 behind at seed 0,
0.055 ahead at seed 1; RESULTS section 13). This probes what the start's loss
measures, on `compress`'s own calibration windows (the first 4,096 tokens of
the training text) and held-out windows:

- `probe`: the held-out loss right after initialization of the default start
  and of `--no-rescale`, each with every logit times `c` (the final norm's
  gain times `c`, which scales the tied head's logits exactly); the share of
  each norm's input energy that the kept channels carry, mean over
  calibration tokens of `‖x M‖² / ‖x‖²` (1 where the stream's energy is all
  kept, `d_S/d_T` where it is spread evenly), against which the width ratio
  `√(d_T/d_S)` assumes 1; and the start with each post-branch norm scaled by
  `√(d_T/d_S · share)` instead, which puts back the teacher's own values on
  the kept channels.
- `train`: `compress` with the logit scale `c` fitted on the calibration
  windows (least cross-entropy) applied to each guided candidate before it
  is scored and trained; its other arguments are `compress`'s. An experiment
  on `compress`'s private search functions, not an option of the package.

    S=num_layers=18,hidden_dim=192,num_heads=1,num_key_value_heads=1,intermediate_dim=608
    KERAS_BACKEND=jax python benchmarks/start_scale.py probe --teacher gemma3 \\
        --shape $S --out benchmarks/results/start_scale_gemma3
    KERAS_BACKEND=jax python benchmarks/start_scale.py train gemma3 --size $S \\
        --text shakespeare:train --eval shakespeare:test --out OUT --steps 50 \\
        --batch-size 8 --checkpoint-every 8 --kd on --temperature 1 \\
        --student-loss-weight 0.5 --seed 0
"""

import argparse
import contextlib
import json
import os
import sys

import numpy as np

CALIBRATION_TOKENS = 4096  # compress's default
HELD_OUT_WINDOWS = 64
SCALES = (1.0, 0.8, 0.65, 0.55, 0.45, 0.35)
# The fit's grid: log-spaced, about 5 % apart.
FIT_GRID = np.exp(np.linspace(np.log(0.1), np.log(2.0), 61))
FIT_WINDOWS = 16


def _final_norm(backbone):
    from keras_guide.adapters import adapter_for
    from keras_guide.adapters.base import Norm

    items = adapter_for(backbone).embeddings(backbone)
    return next(item for item in items if isinstance(item, Norm))


def scale_output(model, c):
    """Multiplies the final norm's gain (and shift) by `c`: every logit of a
    head without soft cap or bias times `c`."""
    import keras

    from keras_guide.adapters import backbone_of

    backbone = backbone_of(model)
    final = _final_norm(backbone)
    weights = {w.path: w for w in backbone.weights}
    for path, offset in ((final.gain, final.offset), (final.shift, 0.0)):
        if path is None:
            continue
        var = weights[path]
        value = np.asarray(keras.ops.convert_to_numpy(var), np.float64) + offset
        var.assign((c * value - offset).astype(var.dtype))


def fit_scale(model, windows, mask):
    """The logit scale (on `FIT_GRID`) with the least cross-entropy on the
    first `FIT_WINDOWS` windows: `(c, loss at 1, loss at c)`."""
    import keras

    from keras_guide._predict import predictor
    from keras_guide.workflows import text

    batches = text.eval_batches(windows, mask, batch_size=4, max_windows=FIT_WINDOWS)
    predict = predictor(model)
    total, count = np.zeros(len(FIT_GRID)), 0.0
    for x, y, weight in batches:
        z = np.asarray(keras.ops.convert_to_numpy(predict(x)), np.float64)
        z_y = np.take_along_axis(z, np.asarray(y)[..., None], -1)[..., 0]
        weight = np.asarray(weight, np.float64)
        for i, c in enumerate(FIT_GRID):
            cz = c * z
            top = cz.max(-1)
            lse = top + np.log(np.exp(cz - top[..., None]).sum(-1))
            total[i] += float(((lse - c * z_y) * weight).sum())
        count += float(weight.sum())
    losses = total / count
    best = int(np.argmin(losses))
    return float(FIT_GRID[best]), float(np.interp(1.0, FIT_GRID, losses)), losses[best]


@contextlib.contextmanager
def norm_inputs(backbone, energy):
    """Adds, per norm weight path, the summed per-channel energy of each
    token's unit-length input to `energy` while the block is open."""
    import keras

    width = backbone.hidden_dim
    originals = []
    for layer in backbone._flatten_layers(include_self=False):
        if "norm" not in type(layer).__name__.lower() or not layer.weights:
            continue
        path = layer.weights[0].path
        original = layer.call

        def call(x, *args, _original=original, _path=path, **kwargs):
            v = np.asarray(keras.ops.convert_to_numpy(x), np.float64)
            if v.shape[-1] == width:
                v = v.reshape(-1, width)
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
                energy[_path] = energy.get(_path, 0.0) + (v * v).sum(0)
            return _original(x, *args, **kwargs)

        layer.call = call
        originals.append((layer, original))
    try:
        yield energy
    finally:
        for layer, original in originals:
            layer.call = original


def probe(args):
    import keras

    import keras_guide.demo  # noqa: F401  (registers shakespeare:*)
    from keras_guide import build_student
    from keras_guide import guide
    from keras_guide.adapters import backbone_of
    from keras_guide.calibration import calibration_batches
    from keras_guide.calibration import collect_statistics
    from keras_guide.evaluation import heldout_cross_entropy
    from keras_guide.workflows import compress
    from keras_guide.workflows import inputs
    from keras_guide.workflows import search
    from keras_guide.workflows import shapes
    from keras_guide.workflows import text

    teacher = inputs.load_model(args.teacher)
    backbone = backbone_of(teacher)
    train, held = compress.windows(
        teacher, inputs.text_paths(args.text), inputs.text_paths(args.eval)
    )
    tokens, _ = search._calibration(train, CALIBRATION_TOKENS)
    batches = calibration_batches(
        tokens, list(backbone.input.keys()), backbone.vocabulary_size
    )
    stats = collect_statistics(teacher, batches)
    energy = {}
    with norm_inputs(backbone, energy):
        for batch in batches:
            backbone(batch[0] if isinstance(batch, tuple) else batch)
    sizes = shapes.parse_shape(args.shape, teacher)
    held_out = text.eval_batches(*held, batch_size=8, max_windows=HELD_OUT_WINDOWS)
    ratio = float(np.sqrt(backbone.hidden_dim / sizes["hidden_dim"]))
    result = {"teacher": args.teacher, "shape": sizes, "width_ratio": ratio}
    for label, options in (("default", {}), ("no-rescale", {"rescale": False})):
        keras.utils.set_random_seed(0)
        student = build_student(teacher, **sizes)
        report = guide(teacher, student, calibration=stats, **options)
        losses = []
        for c in SCALES:
            scale_output(student, c if not losses else c / losses[-1][0])
            losses.append((c, heldout_cross_entropy(student, held_out)))
        result[label] = {f"{c:g}": loss for c, loss in losses}
        print(label, [(c, round(loss, 3)) for c, loss in losses], flush=True)
        if label == "default":
            kept = np.argmax(np.abs(report.projection.matrix), axis=0)
            result["energy_kept"] = {
                path: float(e[kept].sum() / e.sum()) for path, e in energy.items()
            }
            result["post_branch_measured"] = _post_branch_start(
                teacher, sizes, stats, result["energy_kept"], ratio, held_out
            )
    _write(args.out, result)


def _post_branch_start(teacher, sizes, stats, kept, ratio, held_out):
    """The default start with each post-branch norm's gain times
    `√(share) · √(d_T/d_S) / ratio`, i.e. `√(d_T/d_S · share)` in place of
    the width ratio (`None` for a family without post-branch norms)."""
    import keras

    from keras_guide import build_student
    from keras_guide import guide
    from keras_guide.adapters import backbone_of
    from keras_guide.evaluation import heldout_cross_entropy

    post = {p: s for p, s in kept.items() if "/post_" in p}
    if not post:
        return None
    keras.utils.set_random_seed(0)
    student = build_student(teacher, **sizes)
    guide(teacher, student, calibration=stats)
    weights = {w.path: w for w in backbone_of(student).weights}
    for path, share in post.items():
        var = weights[path]
        # Gemma's norms multiply by (1 + scale).
        value = np.asarray(keras.ops.convert_to_numpy(var), np.float64) + 1.0
        var.assign((value * np.sqrt(share) - 1.0).astype(var.dtype))
    loss = heldout_cross_entropy(student, held_out)
    print("post-branch norms by their measured share", round(loss, 3), flush=True)
    return loss


def _write(out, result):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        "| start | " + " | ".join(f"c = {c:g}" for c in SCALES) + " |",
        "|---|" + "---:|" * len(SCALES),
    ]
    for label in ("default", "no-rescale"):
        row = " | ".join(f"{result[label][f'{c:g}']:.3f}" for c in SCALES)
        lines.append(f"| {label} | {row} |")
    kept = result["energy_kept"]
    for kind in ("pre_", "post_", "final"):
        shares = [s for p, s in kept.items() if kind in p]
        if shares:
            lines.append(
                f"\nshare of {kind.strip('_')} norm inputs' energy kept: "
                f"{min(shares):.3f} to {max(shares):.3f} (median "
                f"{float(np.median(shares)):.3f}; {len(shares)} norms)"
            )
    if result["post_branch_measured"] is not None:
        lines.append(
            "default start with post-branch norms by their measured share: "
            f"{result['post_branch_measured']:.3f}"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)


def train(argv):
    """`compress` with each guided candidate's fitted logit scale applied."""
    import keras_guide.demo  # noqa: F401
    from keras_guide.cli import main
    from keras_guide.workflows import search

    calibration = {}
    calibration_rows, start = search._calibration, search._start

    def remembered(train_windows, tokens):
        calibration["rows"] = calibration_rows(train_windows, tokens)
        return calibration["rows"]

    def scaled_start(*args, **kwargs):
        guided = start(*args, **kwargs)

        def begin(sizes):
            student, report = guided(sizes)
            c, before, after = fit_scale(student, *calibration["rows"])
            scale_output(student, c)
            print(
                f"  fitted logit scale {c:.3f}: calibration loss {before:.3f} "
                f"-> {after:.3f}",
                flush=True,
            )
            return student, report

        return begin

    search._calibration, search._start = remembered, scaled_start
    return main(["compress", *argv])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        return train(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("probe",))
    parser.add_argument("--teacher", default="gemma3")
    parser.add_argument("--shape", required=True)
    parser.add_argument("--text", nargs="+", default=["shakespeare:train"])
    parser.add_argument("--eval", nargs="+", default=["shakespeare:test"])
    parser.add_argument("--out", required=True)
    probe(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
