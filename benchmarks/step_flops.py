"""Benchmark: the compress training step's useful FLOP/s against this
machine's own float32 matrix-multiply rate, measured in one process.

The step is `keras-guide compress`'s (`benchmarks/kd_memory.py` builds it:
the `Distiller` with the recipe's `τ = 1`, `α = 0.5`, AdamW, batches of the
training plays) on the teacher of `--teacher` and the student shape the
README's run chose. Its useful work is counted from the shapes, matmuls
only: the teacher's forward pass and the student's forward and backward
passes (twice the forward's matmuls), each `2 · tokens · Σ kernel sizes` of
the per-token projections (`Dense`, `EinsumDense`, the output head) plus the
attention's two `2 · batch · heads · T² · head_dim` products per layer (all
of `T²`: what is computed). The softmaxes, norms and optimizer update are
not counted.

The machine's rate is one `n × n` float32 `keras.ops.matmul` (`--gemm`)
timed in the same process on the same backend, before and after the steps;
the ratio printed is the step's FLOP/s over the median GEMM FLOP/s.

    KERAS_BACKEND=jax python benchmarks/step_flops.py --teacher smollm2
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))


def forward_flops(model, batch, sequence):
    """Matmul FLOPs of one forward pass of a KerasHub causal LM over
    `batch × sequence` tokens: `(projections and head, attention)`."""
    import keras

    from keras_guide import _backend
    from keras_guide.adapters import backbone_of

    backbone = backbone_of(model)
    tokens = batch * sequence
    kernels = sum(
        int(np.prod(layer.kernel.shape))
        for layer in _backend.sublayers(model)
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
    )
    head = backbone.token_embedding
    projections = 2 * tokens * (kernels + head.input_dim * head.output_dim)
    heads = getattr(backbone, "num_query_heads", None) or backbone.num_heads
    head_dim = getattr(backbone, "head_dim", None) or backbone.hidden_dim // heads
    attention = backbone.num_layers * 2 * (2 * batch * heads * sequence**2 * head_dim)
    return projections, attention


def gemm_rate(n, repeats):
    """FLOP/s of `n × n` float32 matmuls on the current backend: one per
    repeat, after one warm-up; returns the list."""
    import keras

    rng = np.random.default_rng(0)
    a, b = (
        keras.ops.convert_to_tensor(rng.random((n, n), np.float32)) for _ in range(2)
    )

    def once():
        started = time.perf_counter()
        product = keras.ops.matmul(a, b)
        keras.ops.convert_to_numpy(product[0, 0])  # waits for the result
        return time.perf_counter() - started

    once()
    return [2 * n**3 / once() for _ in range(repeats)]


def main():
    import kd_memory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher", default="smollm2", choices=sorted(kd_memory.SHAPES)
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=6,
        help="training steps (the first compiles and is not timed)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--gemm", type=int, default=2048, help="GEMM size n")
    parser.add_argument(
        "--logits-chunk-tokens",
        type=int,
        default=None,
        help="the Distiller's (0: the whole batch's logits)",
    )
    args = parser.parse_args()
    if args.steps < 2:
        parser.error(f"--steps must be at least 2. Received: --steps {args.steps}")

    import keras

    from keras_guide.distillation import Distiller
    from keras_guide.guide import build_student
    from keras_guide.workflows import compress
    from keras_guide.workflows import distill
    from keras_guide.workflows import inputs
    from keras_guide.workflows import training

    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    teacher = inputs.load_model(args.teacher)
    keras.utils.set_random_seed(0)
    student = build_student(teacher, **kd_memory.SHAPES[args.teacher])
    data = kd_memory.batches(teacher, args.batch_size, args.sequence_length, args.steps)
    distiller = Distiller(
        teacher,
        student,
        logits_chunk_tokens=args.logits_chunk_tokens,
        **distill.distiller_arguments(compress.RECIPE),
    )
    distiller.compile(optimizer=training.adamw(2e-3, 150, 15))
    rates = gemm_rate(args.gemm, 5)
    times = []
    for x, y, weight in data:
        started = time.perf_counter()
        logs = distiller.train_on_batch(x, y, sample_weight=weight, return_dict=True)
        float(logs["loss"])
        times.append(time.perf_counter() - started)
    rates += gemm_rate(args.gemm, 5)

    b, t = args.batch_size, args.sequence_length
    teacher_flops = sum(forward_flops(teacher, b, t))
    student_flops = 3 * sum(forward_flops(student, b, t))
    step = float(np.median(times[1:]))
    achieved = (teacher_flops + student_flops) / step
    gemm = float(np.median(rates))
    result = {
        "backend": keras.backend.backend(),
        "teacher": args.teacher,
        "batch": [b, t],
        "logits_chunk_tokens": args.logits_chunk_tokens,
        "load_average_at_start": float(load),
        "teacher_forward_gflop": teacher_flops / 1e9,
        "student_forward_backward_gflop": student_flops / 1e9,
        "step_s": step,
        "first_step_s": times[0],
        "step_times_s": times,
        "step_gflops": achieved / 1e9,
        "gemm_n": args.gemm,
        "gemm_gflops": gemm / 1e9,
        "gemm_gflops_all": [r / 1e9 for r in rates],
        "ratio": achieved / gemm,
    }
    print(
        f"{args.teacher} → {kd_memory.SHAPES[args.teacher]}, "
        f"{keras.backend.backend()}, batch {b} × {t}, load average {load} at "
        f"the start"
    )
    print(
        f"step: teacher forward {teacher_flops / 1e9:.0f} + student forward and "
        f"backward {student_flops / 1e9:.0f} GFLOP in {step:.2f} s (median of "
        f"{len(times) - 1}; first {times[0]:.1f} s) = {achieved / 1e9:.1f} GFLOP/s"
    )
    print(
        f"GEMM {args.gemm}³ float32: {gemm / 1e9:.1f} GFLOP/s (median of "
        f"{len(rates)}, {min(rates) / 1e9:.1f} to {max(rates) / 1e9:.1f})"
    )
    print(f"step / GEMM: {achieved / gemm:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
