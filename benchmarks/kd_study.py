"""Does distillation pay on real teachers, and with which weight and temperature?

Each variant is one `keras-guide compress` run with the same student shape,
data, budget and seed (only the distillation settings differ), written to
`OUT/<variant>/`; finished variants are skipped, so a stopped study resumes.
The table compares held-out loss, KL from the teacher and top-1 agreement
after the budget, and the training seconds (a KD step also runs the teacher).

    KERAS_BACKEND=jax python benchmarks/kd_study.py --teacher smollm2 --shape \\
        num_layers=22,hidden_dim=256,num_heads=4,num_key_value_heads=2,\\
intermediate_dim=672 --steps 150 --out benchmarks/results/kd_study_smollm2
    python benchmarks/kd_study.py --out benchmarks/results/kd_study_smollm2 --table
"""

import argparse
import json
import os
import subprocess
import sys

# name: (extra compress arguments)
VARIANTS = {
    "ce-seed0": ["--kd", "off", "--seed", "0"],
    "kd-t1-a0.5-seed0": ["--kd", "on", "--temperature", "1", "--student-loss-weight",
                         "0.5", "--seed", "0"],
    "kd-t2-a0.5-seed0": ["--kd", "on", "--temperature", "2", "--student-loss-weight",
                         "0.5", "--seed", "0"],
    "kd-t1-a0.1-seed0": ["--kd", "on", "--temperature", "1", "--student-loss-weight",
                         "0.1", "--seed", "0"],
    "ce-seed1": ["--kd", "off", "--seed", "1"],
    "kd-t1-a0.5-seed1": ["--kd", "on", "--temperature", "1", "--student-loss-weight",
                         "0.5", "--seed", "1"],
}


def run(args):
    for name in args.runs:
        out = os.path.join(args.out, name)
        if os.path.exists(os.path.join(out, "report.json")):
            print(f"{name}: done")
            continue
        command = [
            sys.executable, "-m", "keras_guide", "compress", args.teacher,
            "--size", args.shape, "--text", *args.text, "--eval", *args.eval,
            "--out", out, "--steps", str(args.steps), "--batch-size", "8",
            "--checkpoint-every", str(max(1, args.steps // 6)),
            *VARIANTS[name],
        ]
        if os.path.exists(out):
            command.append("--resume")
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)


def table(out):
    rows = []
    for name in VARIANTS:
        path = os.path.join(out, name, "report.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            r = json.load(f)
        e = r["evaluation"]
        history = r["training"]
        rows.append((name, e["student_loss"], e["kl"], e["top1_agreement"],
                     history["train_seconds"], e["teacher_loss"]))
    print("| variant | held-out loss | KL from teacher | top-1 agreement | "
          "training s |")
    print("|---|---|---|---|---|")
    for name, loss, kl, top1, seconds, _ in rows:
        print(f"| {name} | {loss:.3f} | {kl:.3f} | {top1:.1%} | {seconds:.0f} |")
    if rows:
        print(f"teacher held-out loss {rows[0][5]:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="smollm2")
    parser.add_argument("--shape", default=None)
    parser.add_argument("--text", nargs="+", default=["shakespeare:train"])
    parser.add_argument("--eval", nargs="+", default=["shakespeare:test"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--runs", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        table(args.out)
    else:
        if args.shape is None:
            parser.error("--shape is needed to run (every variant trains it)")
        run(args)
        table(args.out)


if __name__ == "__main__":
    main()
