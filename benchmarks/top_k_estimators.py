"""How close the offline teacher's KD term is to the online one, on a trained teacher.

The demo's shipped teacher (GPT-2 4 × 256, trained on the plays) and two
2 × 128 students (random init, GUIDE) on held-out windows: for each `k`, the
teacher's probability mass in its top `k` at `τ`, and the ratio to the online
KD loss of the two stored forms `top_k_kd_loss` accepts (the tail kept as one
class with the stored log-normalizer, and the top `k` renormalized).

    KERAS_BACKEND=jax python benchmarks/top_k_estimators.py --temperature 2
"""

import argparse

import keras
import numpy as np

import keras_guide
from keras_guide.demo import data as data_lib
from keras_guide.demo import models
from keras_guide.distillation import losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--k", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--windows", type=int, default=64, help="held-out windows of 128 tokens"
    )
    args = parser.parse_args()
    tau = args.temperature

    teacher = models.load_teacher()
    batches = data_lib.DemoData(128).eval_batches(
        "test", batch_size=16, max_windows=args.windows
    )
    guided = models.build_causal_lm(models.STUDENT_CONFIG, seed=0)
    keras_guide.guide(teacher, guided)
    students = {
        "random init": models.build_causal_lm(models.STUDENT_CONFIG, seed=0),
        "GUIDE": guided,
    }
    print(
        f"backend {keras.backend.backend()}, τ = {tau}, {args.windows} held-out windows"
    )
    print(
        "| student | online KD | k | teacher mass in top k "
        "| tail as one class / online "
        "| renormalized / online |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, student in students.items():
        sums = {}

        def add(key, value, weight):
            total, count = sums.get(key, (0.0, 0.0))
            sums[key] = (total + value * weight, count + weight)

        for x, _, w in batches:
            z_t = keras.ops.cast(teacher.predict_on_batch(x), "float32")
            z_s = keras.ops.cast(student.predict_on_batch(x), "float32")
            tokens = float(np.sum(w))
            log_z = keras.ops.logsumexp(z_t / tau, axis=-1)
            tau0 = np.full((len(w),), tau, "float32")
            p = keras.ops.convert_to_numpy(keras.ops.exp(z_t / tau - log_z[..., None]))
            add("online", float(losses.kd_loss(z_t, z_s, tau, w)), tokens)
            for k in args.k:
                values, indices = keras.ops.top_k(z_t, k)
                mass = np.sort(p, -1)[..., -k:].sum(-1)
                add(("mass", k), float((mass * w).sum() / tokens), tokens)
                add(
                    ("tail", k),
                    float(
                        losses.top_k_kd_loss(values, indices, z_s, tau, w, log_z, tau0)
                    ),
                    tokens,
                )
                add(
                    ("renormalized", k),
                    float(losses.top_k_kd_loss(values, indices, z_s, tau, w)),
                    tokens,
                )
        mean = {key: total / count for key, (total, count) in sums.items()}
        online = mean["online"]
        for k in args.k:
            print(
                f"| {name} | {online:.4f} | {k} | {mean[('mass', k)]:.3f} "
                f"| {mean[('tail', k)] / online:.3f}× "
                f"| {mean[('renormalized', k)] / online:.3f}× |"
            )


if __name__ == "__main__":
    main()
