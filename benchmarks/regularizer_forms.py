"""Profile of the GuideRegularizer's step overhead.

Four forms of the penalty, interleaved.

Same models and data as `distill_step.py`. Forms: no regularizer; one
`λ · mean((W − W*)²)` per guided weight (as shipped); `Σ (W − W*)² · λ/n` per
weight; one fused penalty over the concatenation of all guided weights
(computed in a Distiller subclass, the per-weight regularizers detached).
Prints each round's median step time and the overhead of the fastest round.

    KERAS_BACKEND=tensorflow python benchmarks/regularizer_forms.py 30
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import distill_step as ds
import numpy as np
from keras import ops

import keras_guide
from keras_guide.distillation import Distiller
from keras_guide.regularizers import GuideRegularizer

orig_call = GuideRegularizer.__call__


def sum_call(self, x):
    n = float(np.prod(self.target.shape))
    return ops.sum(ops.square(ops.cast(x, "float32") - self.target)) * (
        self.strength / n
    )


class Fused(Distiller):
    def __init__(self, teacher, student):
        pairs = [
            (w, w.regularizer)
            for w in student.trainable_weights
            if isinstance(w.regularizer, GuideRegularizer)
        ]
        for w, _ in pairs:
            w.regularizer = None
        super().__init__(teacher, student)
        self._pairs = pairs
        self._inv = ops.convert_to_tensor(
            np.concatenate(
                [
                    np.full(int(np.prod(w.shape)), 1 / np.prod(w.shape), "float32")
                    for w, _ in pairs
                ]
            )
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        total = super().compute_loss(x, y, y_pred, sample_weight, training)
        from keras.src import backend

        vals = []
        for w, _ in self._pairs:
            v = (
                backend.get_stateless_scope().get_current_value(w)
                if backend.in_stateless_scope()
                else w
            )
            vals.append(ops.reshape(v, (-1,)))
        flat = ops.concatenate(vals)
        tgt = ops.concatenate([ops.reshape(r.target, (-1,)) for _, r in self._pairs])
        d = flat - tgt
        return total + self._pairs[0][1].strength * ops.sum(d * d * self._inv)


def build(kind, teacher):
    student = ds._gpt2(128, 2, seed=2)
    GuideRegularizer.__call__ = sum_call if kind == "sum" else orig_call
    if kind != "none":
        keras_guide.guide(teacher, student, regularize=1e-2)
    m = (Fused if kind == "fused" else Distiller)(teacher, student)
    m.compile(optimizer="adam")
    return m


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
data = ds._data(steps)
teacher = ds._gpt2(256, 4, seed=1)
res = {k: [] for k in ["none", "per-var", "sum", "fused"]}
for _ in range(3):
    for k in res:
        m = build(k, teacher)
        GuideRegularizer.__call__ = sum_call if k == "sum" else orig_call
        res[k].append(ds._time(m, data, steps))
for k, v in res.items():
    print(
        k,
        " ".join(f"{t * 1e3:.1f}" for t in v),
        f"min {min(v) * 1e3:.1f} ms  overhead {min(v) / min(res['none']) - 1:+.1%}",
    )
