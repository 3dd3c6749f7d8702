"""GUIDE on a Llama-family teacher with grouped-query attention (GQA).

A Llama teacher (4 blocks × 256, 8 query heads sharing 2 key/value heads,
SwiGLU MLP, RMSNorm, RoPE, untied output head) is built from an explicit
config, trained on the training plays with the demo's BPE tokenizer (cached in
`--out` after the first run), then shrunk into a 2 × 128 student with 4 query
heads sharing 1 key/value head. RoPE fixes the head width (32), so the student
keeps whole heads: `guide` selects one key/value group and query heads inside
it (`gqa_head_indices`), projects the residual stream with the PCA of the
token table, and gives every RMSNorm the diagonal of its projected gain
(`norm="fold"` folds the gains into the kernels that read them and the untied
head instead; `benchmarks/norm_treatment.py` compares both on this model). A
random-init student gets the same data, steps and optimizer; both are scored
on the held-out plays.

    python examples/llama_gqa.py                    # teacher 600 steps, students 200
    python examples/llama_gqa.py --teacher-steps 2000 --steps 400
"""

import argparse
import os
import time

import keras

import keras_guide
from keras_guide.callbacks import gap_closed
from keras_guide.demo import data
from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import training

TEACHER = dict(
    vocabulary_size=2048,
    num_layers=4,
    num_query_heads=8,
    num_key_value_heads=2,
    hidden_dim=256,
    intermediate_dim=512,
)
STUDENT = dict(
    num_layers=2,
    hidden_dim=128,
    num_heads=4,
    num_key_value_heads=1,
    intermediate_dim=256,
)
SEQUENCE_LENGTH = 128


def llama_causal_lm(config, seed=0):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(**config)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def train(model, batches, steps, learning_rate, label, verbose):
    model.compile(
        optimizer=training.adamw(learning_rate, steps, max(1, steps // 10)),
        loss=training.causal_lm_loss(),
    )
    return training.train(model, batches, steps, verbose=verbose, label=label)


def load_or_train_teacher(out, demo, steps, batch_size, verbose):
    """The teacher, trained `steps` steps on the training plays (cached in `out`)."""
    teacher = llama_causal_lm(TEACHER)
    path = os.path.join(out, f"llama_teacher_{steps}.weights.h5")
    if os.path.exists(path):
        teacher.load_weights(path)
        return teacher
    train(
        teacher,
        demo.train_batches(batch_size, seed=1),
        steps,
        2e-3,
        f"[teacher: Llama 4x256, GQA 8/2, {steps} steps]",
        verbose,
    )
    os.makedirs(out, exist_ok=True)
    teacher.save_weights(path)
    return teacher


def run(
    out="llama_gqa",
    teacher_steps=600,
    steps=200,
    batch_size=16,
    learning_rate=4e-3,
    teacher=None,
    verbose=True,
    eval_windows=None,
):
    """Trains (or loads) the teacher, then a guided and a random-init student.

    Returns:
        dict with the teacher's held-out loss, each student's loss at step 0
        and after training, the gap closed and the `GuideReport`.
    """
    demo = data.DemoData(SEQUENCE_LENGTH)
    held_out = demo.eval_batches("test", max_windows=eval_windows)
    if teacher is None:
        teacher = load_or_train_teacher(out, demo, teacher_steps, batch_size, verbose)
    results = {"teacher": heldout_cross_entropy(teacher, held_out)}
    batches = demo.train_batches(batch_size, seed=0)
    for name in ("guide", "random"):
        keras.utils.set_random_seed(0)
        student = keras_guide.build_student(teacher, name=f"{name}_student", **STUDENT)
        if name == "guide":
            results["report"] = keras_guide.guide(teacher, student)
            if verbose:
                print(results["report"])
        step0 = heldout_cross_entropy(student, held_out)
        began = time.perf_counter()
        train(student, batches, steps, learning_rate, f"[{name} student]", verbose)
        results[name] = {
            "step0": step0,
            "loss": heldout_cross_entropy(student, held_out),
            "seconds": time.perf_counter() - began,
        }
    results["gap_closed"] = gap_closed(
        results["guide"]["loss"], results["random"]["loss"], results["teacher"]
    )
    if results["guide"]["loss"] < results["teacher"]:
        print(
            "The guided student beat the teacher: the teacher is under-trained for "
            "this budget (raise --teacher-steps), and the gap closed is meaningless."
        )
    if verbose:
        for name in ("guide", "random"):
            r = results[name]
            print(
                f"{name:>6}: held-out loss {r['step0']:.3f} -> {r['loss']:.3f} "
                f"({r['seconds']:.0f}s)"
            )
        print(
            f"teacher {results['teacher']:.3f}; GUIDE closes "
            f"{100 * results['gap_closed']:.1f} % of random init's gap after {steps} "
            f"steps on {keras.backend.backend()}."
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="llama_gqa")
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=4e-3)
    args = parser.parse_args()
    run(args.out, args.teacher_steps, args.steps, args.batch_size, args.learning_rate)


if __name__ == "__main__":
    main()
