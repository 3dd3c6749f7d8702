"""Benchmark: peak memory and step time of `compress`'s KD step, the whole
batch's logits against the logits' terms in chunks of tokens.

The step `keras-guide compress` trains (the `Distiller` with the recipe's
`τ = 1`, `α = 0.5`, AdamW clipped at norm 1, batches of 8 × 128 tokens) on the
teacher of `--teacher` and the student shape the README's run chose, run for
a few steps in a child process per path, one after the other in this run:

- `whole`: `Distiller(logits_chunk_tokens=0)`, the teacher's and the
  student's logits for the whole batch (what compress did before);
- `chunked`: the default, CE and KD from the last hidden states and the
  output heads a chunk of tokens at a time (`distillation/_chunked.py`).

Each child reports its peak resident memory (`VmHWM` of
`/proc/self/status`) once the models are loaded and built, then the peak of
the training steps alone (the peak counter reset after loading, through
`/proc/self/clear_refs`), and the median time of the steps after the first
(which compiles). The student is the README's shape with random weights (its
size, not its values, sets the step's cost); the tokens are the training
plays'.

    KERAS_BACKEND=jax python benchmarks/kd_memory.py --teacher gemma3
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# The shapes compress chose on the README's runs (benchmarks/results/).
SHAPES = {
    "gemma3": dict(
        num_layers=18,
        hidden_dim=192,
        num_heads=1,
        num_key_value_heads=1,
        intermediate_dim=608,
    ),
    "smollm2": dict(
        num_layers=22,
        hidden_dim=256,
        num_heads=4,
        num_key_value_heads=2,
        intermediate_dim=672,
    ),
}
PATHS = {"whole": 0, "chunked": None}


def _peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak():
    """Resets VmHWM to the current resident size (Linux ≥ 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def batches(teacher, batch_size, sequence_length, count):
    """`count` training batches of the README's training plays (the first
    two: enough windows) in `teacher`'s own tokens."""
    from keras_guide.demo import data
    from keras_guide.workflows import inputs
    from keras_guide.workflows import text

    plays = [
        os.path.join(data.plays_dir(), name + "_gut.txt")
        for name in data.split_names()["train"][:2]
    ]
    encoder = inputs.get_encoder("auto", teacher)
    train, _ = text.text_windows(plays, encoder, sequence_length)
    source = text.Batches(*train, batch_size=batch_size, seed=0)
    return [source.batch(step) for step in range(count)]


def child(args):
    import keras
    import numpy as np

    from keras_guide.distillation import Distiller
    from keras_guide.guide import build_student
    from keras_guide.workflows import compress
    from keras_guide.workflows import distill
    from keras_guide.workflows import inputs
    from keras_guide.workflows import training

    teacher = inputs.load_model(args.teacher)
    keras.utils.set_random_seed(0)  # the same student on both paths
    student = build_student(teacher, **SHAPES[args.teacher])
    data = batches(teacher, args.batch_size, args.sequence_length, args.steps)
    distiller = Distiller(
        teacher,
        student,
        logits_chunk_tokens=PATHS[args.child],
        **distill.distiller_arguments(compress.RECIPE),
    )
    distiller.compile(optimizer=training.adamw(2e-3, 150, 15))
    loaded = _peak_mib()
    _reset_peak()
    times, losses = [], []
    for x, y, weight in data:
        started = time.perf_counter()
        logs = distiller.train_on_batch(x, y, sample_weight=weight, return_dict=True)
        losses.append(float(logs["loss"]))
        times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "path": args.child,
                "backend": keras.backend.backend(),
                "load_peak_mib": loaded,
                "step_peak_mib": _peak_mib(),
                "first_step_s": times[0],
                "step_s": float(np.median(times[1:])),
                "losses": losses,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="gemma3", choices=sorted(SHAPES))
    parser.add_argument(
        "--steps",
        type=int,
        default=4,
        help="training steps per path (the first compiles)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.steps < 2:
        parser.error(
            f"--steps must be at least 2 (the first compiles). "
            f"Received: --steps {args.steps}"
        )
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(
        f"{args.teacher}, batch {args.batch_size} × {args.sequence_length}, "
        f"{args.steps} steps per path, load average {load} at the start"
    )
    results = {}
    for path in args.paths:
        command = [sys.executable, __file__, "--child", path, *sys.argv[1:]]
        run = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode or not lines:
            print(f"{path}: the child failed ({run.returncode}):\n{run.stderr[-3000:]}")
            continue
        results[path] = result = json.loads(lines[-1])
        print(
            f"{path:<8} peak {result['step_peak_mib'] / 1024:5.2f} GiB in the steps, "
            f"{result['load_peak_mib'] / 1024:5.2f} GiB loading; step "
            f"{result['step_s']:6.2f} s (first {result['first_step_s']:.1f} s); "
            f"losses {', '.join(f'{v:.4f}' for v in result['losses'])}"
        )
    if len(results) == 2:
        whole, chunked = results["whole"], results["chunked"]
        peak = chunked["step_peak_mib"] / whole["step_peak_mib"]
        print(
            f"chunked / whole: peak {peak:.2f}×, "
            f"step time {chunked['step_s'] / whole['step_s']:.2f}×"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
