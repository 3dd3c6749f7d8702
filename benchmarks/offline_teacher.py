"""Measures the offline teacher (stored top-k logits) against the online one.

Prints, for a GPT-2 teacher and a smaller GPT-2 student built from explicit
configs: seconds per training epoch online and offline, the one-time cost of
the teacher pass, the speed-up per epoch and over the whole run, and the
difference between the offline and the online KD loss at the same weights:
exact for k = V; for k < V, both stored forms of the teacher (the tail beyond
the top k kept as one class, the default, and the top k renormalized).

    KERAS_BACKEND=jax python benchmarks/offline_teacher.py --k 32 --epochs 10
"""

import argparse
import time

import keras
import numpy as np

from keras_guide.distillation import Distiller
from keras_guide.distillation import LogitsDistillation
from keras_guide.distillation import offline_teacher_dataset


def _gpt2(vocab, hidden, layers, heads, seq, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=seq,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def _data(rows, seq, vocab, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (rows, seq + 1)).astype("int32")
    lengths = rng.integers(seq // 2, seq + 1, rows)
    mask = (np.arange(seq)[None] < lengths[:, None]).astype("int32")
    return {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}, ids[:, 1:], mask


# benchmarks/RESULTS.md reports this at τ = 2, the hard case for a top-k cache.
TEMPERATURE = 2.0


def _distiller(args, teacher):
    student = _gpt2(
        args.vocab, args.student_hidden, args.student_layers, 2, args.seq, 1
    )
    distiller = Distiller(teacher, student, LogitsDistillation(TEMPERATURE))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    return distiller


def _time_epochs(fit, epochs):
    fit(1)  # compiles the train step
    start = time.perf_counter()
    fit(epochs)
    return (time.perf_counter() - start) / epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--teacher-hidden", type=int, default=128)
    parser.add_argument("--teacher-layers", type=int, default=4)
    # 2 x 80 is a quarter of the 4 x 128 teacher's parameters (the 4x).
    parser.add_argument("--student-hidden", type=int, default=80)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument(
        "--teacher-sharpness",
        type=float,
        default=8.0,
        help="multiplies the teacher's final LayerNorm gain: a random teacher "
        "is nearly uniform over the vocabulary, a trained one is peaked",
    )
    args = parser.parse_args()

    teacher = _gpt2(
        args.vocab, args.teacher_hidden, args.teacher_layers, 4, args.seq, 0
    )
    norm = teacher.backbone.get_layer("layer_norm")
    norm.gamma.assign(keras.ops.convert_to_numpy(norm.gamma) * args.teacher_sharpness)
    x, y, mask = _data(args.rows, args.seq, args.vocab, 0)
    batch = args.batch_size

    online = _distiller(args, teacher)
    online_epoch = _time_epochs(
        lambda e: online.fit(
            x,
            y,
            sample_weight=mask,
            batch_size=batch,
            epochs=e,
            shuffle=False,
            verbose=0,
        ),
        args.epochs,
    )

    start = time.perf_counter()
    data = offline_teacher_dataset(
        teacher, x, y, mask, k=args.k, batch_size=batch, temperature=TEMPERATURE
    )
    teacher_pass = time.perf_counter() - start
    offline = _distiller(args, teacher)
    offline_epoch = _time_epochs(
        lambda e: offline.fit(data, epochs=e, verbose=0), args.epochs
    )

    exact = offline_teacher_dataset(
        teacher, x, y, mask, k=args.vocab, batch_size=batch, temperature=TEMPERATURE
    )
    renormalized = offline_teacher_dataset(
        teacher, x, y, mask, k=args.k, batch_size=batch, temperature=None
    )
    online_loss = offline.evaluate(
        x, y, sample_weight=mask, batch_size=batch, verbose=0, return_dict=True
    )["kd_loss"]
    top_k_loss, exact_loss, renormalized_loss = (
        offline.evaluate(d, verbose=0, return_dict=True)["kd_loss"]
        for d in (data, exact, renormalized)
    )

    logits = np.asarray(teacher.predict(x, batch_size=batch, verbose=0), np.float64)
    z = logits / float(keras.ops.convert_to_numpy(offline.temperature))
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top_mass = np.sort(p, -1)[..., -args.k :].sum(-1)
    top_mass = float((top_mass * mask).sum() / mask.sum())

    epochs = args.epochs + 1
    print(f"backend: {keras.backend.backend()}")
    print(
        f"teacher {args.teacher_layers}x{args.teacher_hidden} "
        f"({teacher.count_params():,} parameters), student "
        f"{args.student_layers}x{args.student_hidden} "
        f"({offline.student.count_params():,}; the teacher is "
        f"{teacher.count_params() / offline.student.count_params():.1f}x), "
        f"vocab {args.vocab}, "
        f"{args.rows} rows x {args.seq} tokens, batch {batch}, k {args.k}, "
        f"teacher sharpness {args.teacher_sharpness}"
    )
    print(f"online  s/epoch: {online_epoch:.3f}")
    print(
        f"offline s/epoch: {offline_epoch:.3f} "
        f"(+ {teacher_pass:.3f} s teacher pass once)"
    )
    print(f"speed-up per epoch: {online_epoch / offline_epoch:.2f}x")
    print(
        f"speed-up over {epochs} epochs incl. teacher pass: "
        f"{online_epoch * epochs / (offline_epoch * epochs + teacher_pass):.2f}x"
    )
    print(
        f"teacher probability mass in its top {args.k} at the KD temperature: "
        f"{top_mass:.3f}"
    )
    print(
        f"kd_loss online {online_loss:.6f}, offline k={args.k}: tail as one class "
        f"{top_k_loss:.6f} ({top_k_loss / online_loss:.3f}x), renormalized "
        f"{renormalized_loss:.6f} ({renormalized_loss / online_loss:.3f}x)"
    )
    print(
        "relative difference k=V (exact): "
        f"{abs(exact_loss - online_loss) / online_loss:.2e}"
    )


if __name__ == "__main__":
    main()
