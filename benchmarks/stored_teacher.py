"""A teacher off the training device: stored top-k targets against the live one.

Three `distill` runs from the same student (the README's SmolLM2 shape,
initialized as `compress` does: the data-aware GUIDE recipe), on the same
windows in the same order, with the compress recipe (τ = 1, α = 0.5, batch
8 of 128 tokens, AdamW 2e-3): (a) the live Keras teacher, (b) its top-k
targets stored once, before training, by llama.cpp from the `.gguf` file
(`--targets-from llama.cpp`), (c) the same stored by the Keras teacher
(`--targets-from keras`); (b) and (c) are read from disk while training.
Prints, in one table: the seconds spent storing the targets, the training
seconds, the held-out loss after the same steps, and the held-out loss at
the same seconds, read from each run's curve (linear between evaluations):
of training alone, and of storing plus training.

    KERAS_BACKEND=jax python benchmarks/stored_teacher.py --steps 40 --top-k 64 \\
        --out benchmarks/results/stored_teacher
"""

import argparse
import json
import os
import platform
import shutil
import tempfile

import numpy as np

RECIPE = {"temperature": 1.0, "student_loss_weight": 0.5}
SHAPE = dict(
    num_layers=22,
    hidden_dim=256,
    num_heads=4,
    num_key_value_heads=2,
    intermediate_dim=672,
)  # benchmarks/kd_memory.py's SHAPES["smollm2"]


def loss_at(history, seconds):
    """The held-out loss at `seconds` of training, linear between evaluations
    (the first evaluation before any training, the last after it)."""
    times, losses = history["eval_seconds"], history["eval_loss"]
    return float(np.interp(seconds, times, losses))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="smollm2")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-windows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["live", "llama.cpp", "keras"],
        choices=["live", "llama.cpp", "keras"],
    )
    parser.add_argument("--out", required=True, help="the table and results.json")
    parser.add_argument(
        "--work",
        default=None,
        help="the runs' folders (students, checkpoints, stored "
        "targets); default: a temporary folder, removed",
    )
    args = parser.parse_args()

    import keras

    import keras_guide.demo  # noqa: F401 (registers the shakespeare:* texts)
    from keras_guide import checkpoints
    from keras_guide.workflows import compress
    from keras_guide.workflows import distill
    from keras_guide.workflows.inputs import load_model
    from keras_guide.workflows.inputs import text_paths

    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="stored-teacher-")
    path = checkpoints.path(args.teacher)
    keras.utils.set_random_seed(0)
    teacher = load_model(path)
    windows = compress.windows(
        teacher,
        text_paths(["shakespeare:train"]),
        text_paths(["shakespeare:test"]),
        args.sequence_length,
    )
    initial = os.path.join(work, "initial_student.keras")
    # compress's start: the data-aware GUIDE recipe from its calibration pass.
    student, _ = compress.search(teacher, windows[0], shape=SHAPE, verbose=False)
    student.save(initial)
    kd = {
        "live": dict(RECIPE),
        "llama.cpp": {**RECIPE, "top_k": args.top_k, "targets_from": "llama.cpp"},
        "keras": {**RECIPE, "top_k": args.top_k, "targets_from": "keras"},
    }
    results = {}
    for name in args.runs:
        keras.utils.set_random_seed(0)
        student = keras.saving.load_model(initial)
        result = distill.distill(
            teacher,
            student,
            windows,
            os.path.join(work, name),
            num_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=2e-3,
            kd_options=kd[name],
            checkpoint_every=args.eval_every,
            seed=0,
            overwrite=True,
            verbose=False,
            eval_windows=args.eval_windows,
            teacher_path=path,
        )
        with open(os.path.join(work, name, distill.RESULT_FILE)) as f:
            history = json.load(f)["history"]
        results[name] = {
            "store_seconds": result.get("teacher_top_k_seconds", 0.0),
            "train_seconds": result["train_seconds"],
            "held_out_loss": result["held_out_loss"],
            "teacher_loss": result["teacher_loss"],
            "history": history,
        }
        print(
            f"{name}: {results[name]['store_seconds']:.0f} s storing, "
            f"{result['train_seconds']:.0f} s training, held-out "
            f"{result['held_out_loss']:.4f}",
            flush=True,
        )
    train_equal = min(r["train_seconds"] for r in results.values())
    total_equal = min(r["store_seconds"] + r["train_seconds"] for r in results.values())
    for r in results.values():
        r["loss_at_equal_train_seconds"] = loss_at(r["history"], train_equal)
        # Storing first: a run whose storing took longer than the budget has
        # not started training (its initial loss).
        r["loss_at_equal_total_seconds"] = loss_at(
            r["history"], max(0.0, total_equal - r["store_seconds"])
        )
    labels = {
        "live": "live Keras teacher",
        "llama.cpp": f"stored top-{args.top_k}, llama.cpp (disk)",
        "keras": f"stored top-{args.top_k}, Keras teacher (disk)",
    }
    teacher_loss = next(iter(results.values()))["teacher_loss"]
    lines = [
        f"{args.teacher} teacher (held-out loss {teacher_loss:.4f}), "
        f"{args.steps} steps of {args.batch_size} x {args.sequence_length} tokens, "
        f"{keras.backend.backend()}, {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}); held-out loss on "
        f"{args.eval_windows} windows of the test plays",
        "",
        f"| teacher targets | storing s | training s | held-out loss at "
        f"{args.steps} steps | at {train_equal:.0f} s of training | at "
        f"{total_equal:.0f} s of storing + training |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {labels[name]} | {r['store_seconds']:.0f} | {r['train_seconds']:.0f} "
            f"| {r['held_out_loss']:.4f} | {r['loss_at_equal_train_seconds']:.4f} | "
            f"{r['loss_at_equal_total_seconds']:.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
