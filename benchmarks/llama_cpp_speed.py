"""What a smaller student buys in llama.cpp: tokens per second and memory of a
teacher and of a student a quarter its size, on this CPU.

For each real checkpoint: the teacher as shipped (its own quantization), the
teacher re-exported by `save_gguf` in q8_0, and a guided student of about a
quarter of the teacher's parameters in q8_0 and float32 (speed does not
depend on whether it was trained). Each file runs in its own process (so peak
memory is its own): a 128-token prompt, then 64 greedy tokens, 2 threads,
best of 3. Ratios are against the q8_0 teacher, measured in the same run.

    KERAS_BACKEND=jax python benchmarks/llama_cpp_speed.py [smollm2 gemma3]
"""

import argparse
import json
import os
import tempfile

STUDENTS = {
    "smollm2": dict(
        num_layers=8,
        hidden_dim=384,
        num_heads=6,
        num_key_value_heads=2,
        intermediate_dim=1024,
    ),
    "gemma3": dict(
        num_layers=6,
        hidden_dim=256,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=768,
    ),
}


def _parameters(model):
    return int(sum(int(w.numpy().size) for w in model.backbone.weights))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["smollm2", "gemma3"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()

    import keras_guide
    from keras_guide import checkpoints
    from keras_guide.gguf import runtime

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.names:
            source = checkpoints.path(name)
            teacher = keras_guide.load_gguf(source)
            student = keras_guide.build_student(teacher, **STUDENTS[name])
            keras_guide.guide(teacher, student)
            share = _parameters(student) / _parameters(teacher)
            files = {
                "teacher as shipped": source,
                "teacher q8_0": keras_guide.save_gguf(
                    teacher,
                    os.path.join(folder, f"{name}-t.gguf"),
                    dtype="q8_0",
                    metadata_from=source,
                ),
            }
            for dtype in ("q8_0", "float32"):
                files[f"student {dtype}"] = keras_guide.save_gguf(
                    student,
                    os.path.join(folder, f"{name}-s-{dtype}.gguf"),
                    dtype=dtype,
                    metadata_from=source,
                )
            del teacher, student
            measured = {
                label: runtime.speed(path, args.threads)
                for label, path in files.items()
            }
            base = measured["teacher q8_0"]
            for label, m in measured.items():
                rows.append(
                    dict(
                        model=name,
                        file=label,
                        student_share=share,
                        **m,
                        prompt_speedup=m["prompt_tokens_per_s"]
                        / base["prompt_tokens_per_s"],
                        generate_speedup=m["generate_tokens_per_s"]
                        / base["generate_tokens_per_s"],
                        memory_ratio=m["peak_rss_mib"] / base["peak_rss_mib"],
                    )
                )
    print(
        "| model | file | prompt tok/s | generate tok/s | peak RSS MiB | file MiB "
        "| prompt × | generate × | memory × |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['file']} | {r['prompt_tokens_per_s']:.0f} | "
            f"{r['generate_tokens_per_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['file_mib']:.0f} | {r['prompt_speedup']:.2f} | "
            f"{r['generate_speedup']:.2f} | {r['memory_ratio']:.2f} |"
        )
    for name in args.names:
        share = next(r["student_share"] for r in rows if r["model"] == name)
        print(f"{name}: the student holds {share:.1%} of the teacher's parameters")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
