"""Data-aware GUIDE on the demo: each calibration-based choice alone and together.

The demo's ablation (GPT-2 4 x 256 teacher -> 2 x 128 student, the same data
order, budget and optimizer for every row; see `keras-guide demo`) with rows
for the options of `guide(..., calibration=...)`: the activation basis, the
channel basis, importance-selected heads and neurons, the importance block
map, and all of them. The calibration text is the first `--calibration-windows`
training windows (never held-out text); its size and the pass's seconds are
printed.

Usage:
    KERAS_BACKEND=jax python benchmarks/data_aware_demo.py --out runs/data_aware
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def variants(calibration):
    from keras_guide.workflows.ablation import Variant

    def guided(name, **options):
        if any(
            v in ("activations", "channels", "importance") for v in options.values()
        ):
            options["calibration"] = calibration
        return Variant(name, init="guide", guide_options=tuple(options.items()))

    return (
        Variant("random init (seed 0)", seed=0),
        Variant("random init (seed 1)", seed=1),
        Variant("uniform selection (Xu et al.)", init="selection"),
        guided("GUIDE defaults"),
        guided("activation basis", projection="activations"),
        guided("channel basis", projection="channels"),
        guided("importance heads/neurons", select="importance"),
        guided("importance block map", layer_map="importance"),
        guided(
            "all: activations + importance",
            projection="activations",
            select="importance",
            layer_map="importance",
        ),
        guided(
            "all: channels + importance",
            projection="channels",
            select="importance",
            layer_map="importance",
        ),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/data_aware_demo")
    parser.add_argument("--calibration-windows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    from keras_guide.calibration import collect_statistics
    from keras_guide.demo import data
    from keras_guide.demo import models
    from keras_guide.demo.run import run_demo

    windows, _ = data.DemoData(models.STUDENT_CONFIG["max_sequence_length"]).windows[
        "train"
    ]
    calibration = windows[: args.calibration_windows, :-1]
    start = time.perf_counter()
    stats = collect_statistics(
        models.load_teacher(models.ASSETS_DIR),
        [{"token_ids": calibration, "padding_mask": calibration * 0 + 1}],
    )
    print(
        f"calibration: {stats.tokens} tokens from the training plays; one pass "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    run_demo(
        args.out, quick=args.quick, num_steps=args.steps, variants=variants(calibration)
    )


if __name__ == "__main__":
    main()
