"""Does the student use its context as the teacher does, and what makes it?

Each variant is one `keras-guide compress` run (same teacher, student shape,
text, tokens per step and seed; only how the tokens are cut into windows
differs), written to `OUT/<variant>/`; a finished variant is skipped, so a
stopped study resumes. Every student is then measured where it runs, in
llama.cpp on its `.gguf` file and the teacher's:

- `llama-perplexity`'s protocol at 512 and 2,048 tokens of context (the
  run's own report, on its held-out text);
- the loss by position band (tokens 1–128, 129–512, 513–2,048 of 2,048-token
  chunks of the held-out text, every position scored), after training and
  right after initialization (the run's `initial_student.keras`, in Keras).

    KERAS_BACKEND=jax python benchmarks/context_study.py --out \\
        benchmarks/results/context_study_smollm2
    python benchmarks/context_study.py --out \\
        benchmarks/results/context_study_smollm2 --table
"""

import argparse
import json
import os
import subprocess
import sys

# The README's student of SmolLM2 (the shape compress chose at 25 %).
SHAPE = (
    "num_layers=22,hidden_dim=256,num_heads=4,num_key_value_heads=2,"
    "intermediate_dim=672"
)
# name: extra compress arguments. Every variant reads 1,024 tokens a step.
VARIANTS = {
    "windows-128": ["--sequence-length", "128", "--batch-size", "8"],
    "windows-512": ["--sequence-length", "512", "--batch-size", "2"],
    "windows-1024": ["--sequence-length", "1024", "--batch-size", "1"],
}
BANDS = ((1, 128), (129, 512), (513, 2047))
BAND_CONTEXT, BAND_CHUNKS = 2048, 4


def run_variant(name, args):
    out = os.path.join(args.out, name)
    if os.path.exists(os.path.join(out, "report.json")):
        print(f"{name}: done before")
        return
    command = [
        sys.executable,
        "-m",
        "keras_guide",
        "compress",
        args.teacher,
        "--size",
        args.shape,
        "--text",
        *args.text,
        "--eval",
        *args.eval,
        "--steps",
        str(args.steps),
        "--seed",
        "0",
        "--out",
        out,
        *VARIANTS[name],
    ]
    if os.path.exists(out):
        command.append("--resume")
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def bands(nll):
    """Mean loss of each band of positions (1-based, the predicted token's)."""
    return {f"{a}-{b}": float(nll[:, a - 1 : b].mean()) for a, b in BANDS}


def measure_bands(name, args):
    """The teacher's and the student's (trained, and at initialization) loss by
    position band, cached in `OUT/<variant>/bands.json`."""
    import keras

    from keras_guide.evaluation import llama_perplexity
    from keras_guide.evaluation import runners
    from keras_guide.workflows import evaluate

    folder = os.path.join(args.out, name)
    path = os.path.join(folder, "bands.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    with open(os.path.join(folder, "heldout.txt"), encoding="utf-8") as f:
        text = f.read()
    teacher = evaluate.open_runner(args.teacher, BAND_CONTEXT)
    student = runners.LlamaCppRunner(os.path.join(folder, "student.gguf"), BAND_CONTEXT)
    initial = evaluate.keras_runner(
        keras.saving.load_model(os.path.join(folder, "initial_student.keras")),
        "initial",
    )
    try:
        ids, bos = llama_perplexity.shared_tokens(
            {"teacher": teacher, "student": student}, text
        )
        result = {
            role: bands(
                llama_perplexity.nll_by_position(
                    runner, ids, BAND_CONTEXT, bos, BAND_CHUNKS
                )
            )
            for role, runner in (
                ("teacher", teacher),
                ("student", student),
                ("initial", initial),
            )
        }
    finally:
        teacher.close()
        student.close()
    result["tokens"] = BAND_CONTEXT * BAND_CHUNKS
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def table(args):
    rows = [
        "| variant | train s | held-out loss (128-token windows) | "
        "PPL at 512 (teacher / student) | PPL at 2,048 | student − teacher at "
        "512 / 2,048 (nats) | loss by position 1–128 / 129–512 / 513–2,047: "
        "teacher | student | at initialization |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        folder = os.path.join(args.out, name)
        report_path = os.path.join(folder, "report.json")
        if not os.path.exists(report_path):
            continue
        with open(report_path) as f:
            report = json.load(f)
        contexts = report["llama_perplexity"]["contexts"]
        ppl, gaps = [], []
        for context in ("512", "2048"):
            figures = contexts[context]
            t, s = figures["teacher"], figures["student"]
            ppl.append(f"{t['perplexity']:.1f} / {s['perplexity']:.1f}")
            gaps.append(f"{s['nll'] - t['nll']:.3f}")
        b = measure_bands(name, args)
        band = {
            role: " / ".join(f"{v:.3f}" for v in b[role].values())
            for role in ("teacher", "student", "initial")
        }
        rows.append(
            f"| {name} | {report['training']['train_seconds']:.0f} | "
            f"{report['evaluation']['student_loss']:.3f} | {ppl[0]} | {ppl[1]} | "
            f"{' / '.join(gaps)} | {band['teacher']} | {band['student']} | "
            f"{band['initial']} |"
        )
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="smollm2")
    parser.add_argument("--shape", default=SHAPE)
    parser.add_argument("--text", nargs="+", default=["shakespeare:train"])
    parser.add_argument("--eval", nargs="+", default=["shakespeare:test"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument(
        "--runs", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)
    )
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--table", action="store_true", help="print the table of the finished variants"
    )
    args = parser.parse_args()
    if not args.table:
        for name in args.runs:
            run_variant(name, args)
    table(args)


if __name__ == "__main__":
    main()
