"""`guide(norm=...)` on a second family: the Llama example's teacher and student.

The long-budget study chose `norm="diagonal"` over `"fold"` on GPT-2
(LayerNorm, tied head). This repeats the comparison on a Llama teacher
(RMSNorm, SwiGLU, GQA, untied head: `examples/llama_gqa.py`, trained
`--teacher-steps` on the training plays and cached in `--out`), with a
random-init student beside them. Each student is trained twice from the same
initialization and data order: the example's protocol (AdamW, cosine over
`--steps`), and an anytime schedule (warm-up 100 steps, then `1/sqrt(step)`)
scored at every budget in `--budgets`. Held-out loss is on all four test plays.

    KERAS_BACKEND=torch python benchmarks/norm_treatment.py --out llama_norm
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
BATCH_SIZE = 16  # the example's


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="llama_norm")
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--budgets", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--norms", nargs="+", default=["fold", "diagonal", "reset"])
    args = parser.parse_args(argv)

    import keras
    import llama_gqa
    import schedules

    import keras_guide
    from keras_guide.demo import data
    from keras_guide.evaluation import heldout_cross_entropy
    from keras_guide.workflows import training

    demo = data.DemoData(llama_gqa.SEQUENCE_LENGTH)
    held_out = demo.eval_batches("test")
    teacher = llama_gqa.load_or_train_teacher(
        args.out, demo, args.teacher_steps, BATCH_SIZE, False
    )
    results = {
        "backend": keras.backend.backend(),
        "arguments": vars(args),
        "teacher": heldout_cross_entropy(teacher, held_out),
        "students": {},
    }

    def student(init):
        keras.utils.set_random_seed(0)
        model = keras_guide.build_student(
            teacher, name=f"student_{init}", **llama_gqa.STUDENT
        )
        if init != "random":
            keras_guide.guide(teacher, model, norm=init)
        return model

    for init in [*args.norms, "random"]:
        model = student(init)
        row = {"step 0": heldout_cross_entropy(model, held_out)}
        llama_gqa.train(
            model, demo.train_batches(BATCH_SIZE, seed=0), args.steps, 4e-3, "", False
        )
        row[f"cosine {args.steps}"] = heldout_cross_entropy(model, held_out)
        model = student(init)
        model.compile(
            optimizer=training.adamw(4e-3, None, 100, schedule=schedules.inverse_sqrt),
            loss=training.causal_lm_loss(),
        )
        batches, done = demo.train_batches(BATCH_SIZE, seed=0), 0
        for budget in sorted(args.budgets):
            training.train(model, batches, budget, start_step=done, verbose=False)
            done = budget
            row[f"anytime {budget}"] = heldout_cross_entropy(model, held_out)
        results["students"][init] = row
        print(init, {k: round(v, 4) for k, v in row.items()}, flush=True)

    columns = list(next(iter(results["students"].values())))
    lines = [
        f"Teacher Llama 4x256 ({args.teacher_steps} steps): held-out loss "
        f"{results['teacher']:.4f}; student 2x128, GQA 4/1; {results['backend']}.",
        "",
        "| student | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for init, row in results["students"].items():
        name = "random init" if init == "random" else f'GUIDE norm="{init}"'
        cells = " | ".join(f"{row[c]:.4f}" for c in columns)
        lines.append(f"| {name} | {cells} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
