"""Benchmark: steady-state distillation step time vs keras.distillation and plain fit.

Same GPT-2-shaped teacher (4 × 256) and student (2 × 128), vocabulary 2048,
batches of 16 × 128 tokens, Adam, on the backend of `KERAS_BACKEND`. Peers in the
same run, each timed over the steps after the first (compilation) epoch:
- the student's plain `fit` (cross-entropy only: the floor),
- `keras.distillation.Distiller` with an explicit `keras.losses.KLDivergence()`
  (so that it computes a true KD term),
- `keras_guide.distillation.Distiller` (masked CE + τ²-scaled KD),
- the same with a `GuideRegularizer` on every guided student weight.

    KERAS_BACKEND=jax python benchmarks/distill_step.py --steps 30
"""

import argparse
import time

import keras
import numpy as np

import keras_guide
from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation

VOCAB, SEQ, BATCH = 2048, 128, 16


def _gpt2(hidden, layers, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_heads=4,
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=SEQ,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def _data(steps):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (steps * BATCH, SEQ + 1)).astype("int32")
    mask = np.ones((steps * BATCH, SEQ), "int32")
    mask[:, SEQ - 16 :] = 0  # some padding, which sample_weight must drop
    x = {"token_ids": ids[:, :-1], "padding_mask": mask}
    return x, ids[:, 1:], mask.astype("float32")


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _time(model, data, steps):
    x, y, w = data
    timer = _StepTimer()
    model.fit(
        x,
        y,
        sample_weight=w,
        batch_size=BATCH,
        epochs=2,
        steps_per_epoch=steps // 2,
        verbose=0,
        callbacks=[timer],
        shuffle=False,
    )
    per_step = np.diff(np.asarray(timer.times[steps // 2 :]))  # second epoch only
    return float(np.median(per_step))


def _student_fit(teacher):
    student = _gpt2(128, 2, seed=2)
    student.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return student


def _keras_distiller(teacher):
    peer = keras.distillation.Distiller(
        teacher=teacher,
        student=_gpt2(128, 2, seed=2),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=2.0, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=0.5,
    )
    peer.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return peer


def _ours(teacher, regularize=None):
    student = _gpt2(128, 2, seed=2)
    if regularize is not None:
        keras_guide.guide(teacher, student, regularize=regularize)
    ours = Distiller(teacher, student, LogitsDistillation(2.0))  # as the peer
    ours.compile(optimizer="adam")
    return ours


CONFIGS = {
    "student fit": _student_fit,
    "keras Distiller": _keras_distiller,
    "keras_guide Distiller": _ours,
    "+ GuideRegularizer": lambda teacher: _ours(teacher, regularize=1e-2),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved repetitions; the fastest counts",
    )
    args = parser.parse_args()
    data = _data(args.steps)
    teacher = _gpt2(256, 4, seed=1)
    results = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, build in CONFIGS.items():
            results[name].append(_time(build(teacher), data, args.steps))
    results = {name: min(times) for name, times in results.items()}

    print(
        f"backend {keras.backend.backend()}, {BATCH}×{SEQ} tokens/step, median of "
        f"{args.steps // 2 - 1} steady steps, "
        f"fastest of {args.rounds} interleaved rounds"
    )
    for name, seconds in results.items():
        print(f"{name:<24} {seconds * 1e3:8.1f} ms/step")
    base = results["keras Distiller"]
    print(
        f"keras_guide / keras Distiller: {results['keras_guide Distiller'] / base:.3f}×"
    )
    guide = results["keras_guide Distiller"]
    print(
        "GuideRegularizer overhead:     "
        f"{results['+ GuideRegularizer'] / guide - 1:+.1%}"
    )
    print(f"keras_guide / student fit:     {guide / results['student fit']:.3f}×")


if __name__ == "__main__":
    main()
