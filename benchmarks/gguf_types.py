"""What each GGUF type costs a trained student in llama.cpp: file size, speed,
memory, and quality against the float32 file, all measured by llama.cpp.

The student (`student.keras` from `keras-guide compress`) is exported once in
every type of `TYPES` (`export(..., gguf_dtype=[...])`: the `gguf` package's
types from the model, llama.cpp's from one float32 file). Each file then runs
in llama.cpp:
- speed and peak memory (`keras_guide.gguf.runtime.speed`): a 128-token
  prompt, then 64 greedy tokens, best of 3, in a process of its own; ratios
  to the float32 file measured in the same run;
- quality with `llama-perplexity`'s protocol (`keras_guide.workflows.
  evaluate`): the Shakespeare test plays (`shakespeare:test`, never training
  text) cut into 512-token chunks, the second half of each scored, every file
  on the same tokens; perplexity, and against the float32 file the mean KL,
  the share of tokens with the same top-1 token and ln(PPL/PPL_float32).
Also the share of the file's weights stored in the type's own tensor type
(the rest: llama.cpp's bumps to more bits and its 32-wide fallback for rows
not in whole 256-blocks).

    KERAS_BACKEND=jax python benchmarks/gguf_types.py \
        --student /tmp/kq_student/student.keras --teacher smollm2 --chunks 40

(`--parts speed` or `--parts quality` measures one part again and keeps the
other from the results folder: speed is worth measuring on an idle machine.)
"""

import argparse
import collections
import json
import os
import tempfile

TYPES = (
    "float32",
    "float16",
    "q8_0",
    "q6_k",
    "q5_k_m",
    "q4_k_m",
    "q4_0",
    "q3_k_m",
    "q2_k",
)


def tensor_shares(path, own):
    """`(share of weights in `own`, {type: share})` over the file's matrices."""
    from keras_guide.gguf import GGUFFile

    f = GGUFFile(path)
    weights = collections.Counter()
    for name in f.tensor_names:
        shape = f.tensor_shape(name)
        if len(shape) == 2:
            weights[f.tensor_type(name)] += shape[0] * shape[1]
    total = sum(weights.values())
    shares = {k: v / total for k, v in weights.most_common()}
    return shares.get(own, 0.0), shares


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--student",
        required=True,
        help="a trained student: .keras file or preset folder",
    )
    parser.add_argument(
        "--teacher",
        default="smollm2",
        help="the teacher's .gguf (or packaged name) whose "
        "tokenizer and context length the files copy",
    )
    parser.add_argument("--types", nargs="+", default=list(TYPES))
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["speed", "quality"],
        choices=("speed", "quality"),
        help="what to measure (a part measured before and not "
        "now is kept from --out's results.json)",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=40,
        help="512-token chunks of the test plays scored",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="speed: the best of this many rounds over the files",
    )
    parser.add_argument("--out", default="benchmarks/results/gguf_types")
    args = parser.parse_args()
    if args.types[0] != "float32":
        parser.error("--types must start with float32, the base of the comparison")

    import keras

    import keras_guide  # noqa: F401 (registers the student's classes)
    from keras_guide import checkpoints
    from keras_guide.gguf import dtypes
    from keras_guide.workflows import export

    student = (
        keras.saving.load_model(args.student)
        if args.student.endswith(".keras")
        else __import__("keras_hub").models.CausalLM.from_preset(args.student)
    )
    parameters = int(sum(int(w.numpy().size) for w in student.backbone.weights))
    teacher = checkpoints.path(args.teacher)
    os.makedirs(args.out, exist_ok=True)
    saved = os.path.join(args.out, "results.json")
    results = {"rows": {}}
    if os.path.exists(saved):
        with open(saved) as f:
            results = json.load(f)
    results.update(
        student=args.student,
        parameters=parameters,
        teacher=args.teacher,
        threads=args.threads,
    )
    rows = {d: results["rows"].get(d, {}) for d in args.types}
    with tempfile.TemporaryDirectory() as folder:
        written = export.export(
            student,
            os.path.join(folder, "student"),
            ["gguf"],
            gguf_dtype=args.types,
            metadata_from=teacher,
        )
        del student
        files = {
            d: written["gguf" if i == 0 else f"gguf.{d}"]
            for i, d in enumerate(args.types)
        }
        for dtype, path in files.items():
            own, shares = tensor_shares(path, dtypes.TYPES[dtype].tensor_type)
            rows[dtype].update(
                file_mib=os.path.getsize(path) / 2**20,
                bits_per_weight=os.path.getsize(path) * 8 / parameters,
                own_type_share=own,
                tensor_types=shares,
            )
        if "speed" in args.parts:
            _speed(files, rows, args.threads, args.rounds)
            results["rounds"] = args.rounds
        if "quality" in args.parts:
            results["text"], results["chunks"] = _quality(files, rows, args)
    results["rows"] = rows
    with open(saved, "w") as f:
        json.dump(results, f, indent=2)
    table = render(results)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)


def _speed(files, rows, threads, rounds):
    """llama.cpp's speed and peak memory on each file, ratios to float32: the
    best of `rounds` rounds over all files (round-robin, so that a busy
    moment of the machine slows every type alike)."""
    from keras_guide.gguf import runtime

    best = {}
    for _ in range(rounds):
        for dtype, path in files.items():
            got = runtime.speed(path, threads=threads)
            mine = best.setdefault(dtype, got)
            for key in ("prompt_tokens_per_s", "generate_tokens_per_s"):
                mine[key] = max(mine[key], got[key])
            mine["peak_rss_mib"] = min(mine["peak_rss_mib"], got["peak_rss_mib"])
    for dtype, got in best.items():
        rows[dtype].update(got)
        print(dtype, {k: round(v, 1) for k, v in got.items()}, flush=True)
    base = rows["float32"]
    for row in rows.values():
        row["prompt_ratio"] = row["prompt_tokens_per_s"] / base["prompt_tokens_per_s"]
        row["generate_ratio"] = (
            row["generate_tokens_per_s"] / base["generate_tokens_per_s"]
        )


def _quality(files, rows, args):
    """llama-perplexity's figures on the test plays, against float32."""
    import keras_guide.demo  # noqa: F401 (registers the shakespeare:* texts)
    from keras_guide.workflows import evaluate
    from keras_guide.workflows.inputs import text_paths

    report = evaluate.evaluate(
        list(files.values()),
        text_paths(["shakespeare:test"]),
        contexts=(512,),
        base=files["float32"],
        max_chunks=args.chunks,
        threads=args.threads,
    )
    figures = report["results"]["512"]
    for dtype, path in files.items():
        result, row = figures[path], rows[dtype]
        vs = result.get("vs_base")
        row.update(
            perplexity=result["perplexity"],
            perplexity_error=result["perplexity_error"],
            tokens_scored=result["tokens"],
            kl=vs["kl"] if vs else 0.0,
            kl_error=vs["kl_error"] if vs else 0.0,
            kl_99=vs["kl_percentiles"]["99.0"] if vs else 0.0,
            same_top=vs["same_top"] if vs else 1.0,
            ln_ppl_ratio=vs["ln_ppl_ratio"] if vs else 0.0,
        )
    return report["text"], args.chunks


def render(results):
    rows = results["rows"]
    first = next(iter(rows.values()))
    lines = [
        f"A {results['parameters'] / 1e6:.1f}M-parameter student in llama.cpp "
        f"({results['threads']} threads, speed the best of "
        f"{results.get('rounds', 1)} rounds); quality on "
        f"{first.get('tokens_scored', 0):,} tokens of the Shakespeare test plays "
        f"(llama-perplexity's protocol: 512-token chunks, second halves scored, "
        f"{results.get('chunks')} chunks), KL and top-1 against the float32 file.",
        "",
        "| type | MiB | bits/weight | own type | prompt tok/s | generated tok/s "
        "| peak MiB | perplexity | KL (nats/token) | KL p99 | same top-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, r in rows.items():
        speed = (
            "| — | — | —"
            if "prompt_tokens_per_s" not in r
            else f"| {r['prompt_tokens_per_s']:.0f} ({r['prompt_ratio']:.2f}×) "
            f"| {r['generate_tokens_per_s']:.0f} ({r['generate_ratio']:.2f}×) "
            f"| {r['peak_rss_mib']:.0f}"
        )
        quality = (
            "| — | — | — | —"
            if "perplexity" not in r
            else f"| {r['perplexity']:.2f} ± {r['perplexity_error']:.2f} "
            f"| {r['kl']:.3g} ± {r['kl_error']:.1g} | {r['kl_99']:.3g} "
            f"| {r['same_top']:.1%}"
        )
        lines.append(
            f"| {dtype} | {r['file_mib']:.1f} | {r['bits_per_weight']:.2f} "
            f"| {r['own_type_share']:.0%} {speed} {quality} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
