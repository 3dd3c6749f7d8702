"""Benchmark: GUIDE's projection and a full guide() against the hardware floor.

Peers, each measured in its own subprocess on the same table (so peak RSS is
per method): one `E_Tᵀ E_T` float32 matrix product (the floor: no exact PCA
does less arithmetic), keras_guide's `pca_projection` (float32 chunk products,
float64 accumulation; and all-float64), NumPy's thin SVD of the table, and
scikit-learn's randomized PCA where installed; then `guide()` on a one-block
Gemma-shaped teacher with that table into a `d_S`-wide student.

    python benchmarks/pca_init.py                      # 256,000 × 2,048 -> 1,024
    python benchmarks/pca_init.py --vocab 32000 --width 1024 --dim 512

A method still running after `--timeout` seconds (default 300) is stopped and
reported as a lower bound.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

METHODS = ("floor", "pca_float32", "pca_float64", "svd", "sklearn", "guide")


def _table(vocab, width):
    rng = np.random.default_rng(0)
    # A decaying spectrum, like a trained embedding table.
    table = rng.standard_normal((vocab, width), dtype=np.float32)
    table *= 1.0 / np.sqrt(1.0 + np.arange(width, dtype=np.float32))
    return table


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(method, vocab, width, dim):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if method.startswith("pca"):
        from keras_guide.initializers import pca_projection
    table = _table(vocab, width)
    base = _rss_mib()
    began = time.perf_counter()
    if method == "floor":
        table.T @ table
    elif method in ("pca_float32", "pca_float64"):
        pca_projection(table, dim, precision=method.split("_")[1])
    elif method == "svd":
        np.linalg.svd(table, full_matrices=False)
    elif method == "sklearn":
        from sklearn.decomposition import PCA

        PCA(n_components=dim, svd_solver="randomized", random_state=0).fit(table)
    elif method == "guide":
        import keras_hub

        import keras_guide

        config = dict(
            vocabulary_size=vocab,
            num_layers=1,
            num_query_heads=8,
            num_key_value_heads=1,
            hidden_dim=width,
            intermediate_dim=4 * width,
            head_dim=width // 8,
        )
        teacher = keras_hub.models.GemmaBackbone(**config)
        teacher.token_embedding.embeddings.assign(table)
        del table
        student = keras_guide.build_student(
            teacher, hidden_dim=dim, num_heads=4, intermediate_dim=2 * dim
        )
        base = _rss_mib()
        began = time.perf_counter()
        keras_guide.guide(teacher, student, blocks="all")
    seconds = time.perf_counter() - began
    return {"method": method, "seconds": seconds, "peak_extra_mib": _rss_mib() - base}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=256_000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds after which a method is stopped and reported as a lower bound",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.vocab, args.width, args.dim)))
        return
    results = {}
    for method in args.methods.split(","):
        if method == "sklearn":
            try:
                import sklearn  # noqa: F401
            except ImportError:
                print("sklearn: not installed, skipped")
                continue
        try:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    method,
                    "--vocab",
                    str(args.vocab),
                    "--width",
                    str(args.width),
                    "--dim",
                    str(args.dim),
                ],
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
        except subprocess.TimeoutExpired:
            # A lower bound is still a measurement: the peer took longer than this.
            results[method] = {
                "method": method,
                "seconds": float(args.timeout),
                "peak_extra_mib": float("nan"),
                "stopped": True,
            }
            print(f"{method:<12} > {args.timeout:7.0f} s   (stopped)", flush=True)
            continue
        if out.returncode:
            print(f"{method}: failed\n{out.stderr[-2000:]}")
            continue
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[method]
        print(
            f"{method:<12} {r['seconds']:9.2f} s   "
            f"peak extra RSS {r['peak_extra_mib']:9.1f} MiB",
            flush=True,
        )
    floor = results.get("floor", {}).get("seconds")
    table_mib = args.vocab * args.width * 4 / 2**20
    student_mib = args.vocab * args.dim * 4 / 2**20
    print(
        f"\ntable {args.vocab}×{args.width} float32 = {table_mib:.0f} MiB; "
        f"student table {student_mib:.0f} MiB; "
        f"d_T² float64 = {args.width**2 * 8 / 2**20:.0f} MiB"
    )
    for method, r in results.items():
        if floor and method != "floor":
            bound = "≥ " if r.get("stopped") else ""
            print(f"{method:<12} {bound}{r['seconds'] / floor:6.2f}× the floor")
    if "svd" in results and "pca_float32" in results:
        svd = results["svd"]
        bound = "at least " if svd.get("stopped") else ""
        print(
            f"full SVD / pca_float32: {bound}"
            f"{svd['seconds'] / results['pca_float32']['seconds']:.1f}× slower"
        )


if __name__ == "__main__":
    main()
