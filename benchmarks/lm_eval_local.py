"""lm-evaluation-harness on the real SmolLM2-135M, offline: a local cloze task.

Builds a multiple-choice task from Python's standard-library docstrings
(text no test here tuned to): each item is the first sentence of a
docstring, `name: sentence`, and four candidate next sentences: the
docstring's true second sentence and the second sentences of three other
docstrings, in a seeded random order. The task is a local JSON file and a
YAML in `OUT/`, run through `keras_guide.evaluation.harness.evaluate_tasks`
(`lm_eval.simple_evaluate` over `KerasLM`) on the GGUF file loaded with
`keras_guide.load_gguf`. Prints acc and acc_norm with their standard
errors and chance (0.25); the same requests scored from llama.cpp's own
logits of the same tokens (a child process, `keras_guide.gguf.runtime`),
with the per-request gap in log-likelihood; and the seconds taken (load;
evaluation, the first time with the compilation of each padded batch shape,
then the same requests again on the same `KerasLM`, whose accuracies must
equal lm-eval's). Writes `OUT/results.json` and `OUT/table.md`.

    KERAS_BACKEND=jax python benchmarks/lm_eval_local.py \\
        --out benchmarks/results/lm_eval_local

What it printed (2 cores shared with four other jobs, load average 7, so
the seconds are inflated, llama.cpp's threads most of all):

    | metric | Keras (lm-eval) | stderr | llama.cpp, same tokens | chance |
    |---|---|---|---|---|
    | acc | 0.460 | 0.071 | 0.460 | 0.250 |
    | acc_norm | 0.560 | 0.071 | 0.560 | 0.250 |

    Per request, |log-likelihood(Keras) - log-likelihood(llama.cpp)|: mean
    0.3465, max 2.0376 nats (0.0187 per continuation token); both pick the
    same choice on 100% of the items.
    load_gguf: 41.1 s; evaluate_tasks (200 loglikelihood requests): 160.4 s
    the first time (JAX compiles each padded batch shape), 48.1 s again on
    the same KerasLM; llama.cpp's logits of the same tokens: 561.3 s
"""

import argparse
import importlib
import inspect
import json
import os
import platform
import re
import sys
import time

import numpy as np

MODULES = (
    "argparse",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mimetypes",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
TASK = "stdlib_cloze"


def docstring_pairs():
    """`(name, first sentence, second sentence)` of every public function,
    class and method of `MODULES` whose docstring opens with two prose
    sentences of 30 to 200 characters, sorted by name, one per docstring."""
    seen, pairs = set(), []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        members = []
        for name, value in vars(module).items():
            if (
                name.startswith("_")
                or getattr(value, "__module__", None) != module.__name__
            ):
                continue
            members.append((f"{module_name}.{name}", value))
            if inspect.isclass(value):
                members += [
                    (f"{module_name}.{name}.{n}", v)
                    for n, v in vars(value).items()
                    if not n.startswith("_") and callable(v)
                ]
        for name, value in members:
            doc = inspect.cleandoc(getattr(value, "__doc__", None) or "")
            paragraph = " ".join(doc.split("\n\n")[0].split())
            if not paragraph or paragraph in seen:
                continue
            seen.add(paragraph)
            sentences = SENTENCE.split(" ".join(doc.split()))
            if len(sentences) < 2:
                continue
            first, second = sentences[0], sentences[1]
            if all(
                30 <= len(s) <= 200 and s[-1] in ".!?" and ">>>" not in s
                for s in (first, second)
            ):
                pairs.append((name, first, second))
    return sorted(pairs)


def cloze_items(count, seed=0):
    """`count` items evenly spaced over `docstring_pairs()`; each one's three
    distractors are other docstrings' second sentences."""
    pairs = docstring_pairs()
    if len(pairs) < count + 3:
        raise SystemExit(f"Only {len(pairs)} docstrings qualify; ask for fewer items.")
    rng = np.random.default_rng(seed)
    rows = np.round(np.linspace(0, len(pairs) - 1, count)).astype(int)
    items = []
    for row in rows:
        name, first, second = pairs[row]
        others = rng.choice(
            [i for i in range(len(pairs)) if i != row], 3, replace=False
        )
        choices = [second] + [pairs[i][2] for i in others]
        order = rng.permutation(4)
        items.append(
            {
                "context": f"{name}: {first}",
                "choices": [choices[i] for i in order],
                "gold": int(np.argmax(order == 0)),
            }
        )
    return items, len(pairs)


def write_task(folder, items):
    os.makedirs(folder, exist_ok=True)
    data = os.path.abspath(os.path.join(folder, f"{TASK}.jsonl"))
    with open(data, "w") as f:
        f.writelines(json.dumps(item) + "\n" for item in items)
    with open(os.path.join(folder, f"{TASK}.yaml"), "w") as f:
        f.write(
            f"task: {TASK}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            'doc_to_text: "{{context}}"\n'
            'doc_to_choice: "{{choices}}"\n'
            "doc_to_target: gold\n"
            "metric_list:\n"
            "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
        )


def llama_cpp_loglikelihoods(path, tokens):
    """`Σ log p(continuation)` from llama.cpp's own logits (float64 on the
    host) for `(context ids, continuation ids)` pairs, each evaluated from
    an empty cache."""
    from keras_guide.gguf import runtime

    out = []
    longest = max(len(c) + len(x) for c, x in tokens)
    with runtime.Session(path, context=longest) as session:
        for context, continuation in tokens:
            z = session.logits(context + continuation, first=len(context) - 1)
            z = np.asarray(z[:-1], np.float64)
            z = z - z.max(-1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
            out.append(log_p[np.arange(len(continuation)), continuation].sum())
    return np.array(out)


def accuracies(items, lls):
    """lm-eval's acc and acc_norm (log-likelihood per character) of
    per-choice log-likelihoods."""
    lls = np.asarray(lls, np.float64).reshape(len(items), 4)
    gold = np.array([item["gold"] for item in items])
    chars = np.array([[len(c) for c in item["choices"]] for item in items], float)
    return {
        "acc": float(np.mean(lls.argmax(1) == gold)),
        "acc_norm": float(np.mean((lls / chars).argmax(1) == gold)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="smollm2", help="a packaged checkpoint name or a .gguf file"
    )
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/lm_eval_local")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    items, pool = cloze_items(args.items)
    write_task(args.out, items)

    import keras

    import keras_guide
    from keras_guide import checkpoints
    from keras_guide.evaluation import harness

    path = args.model if args.model.endswith(".gguf") else checkpoints.path(args.model)
    started = time.perf_counter()
    model = keras_guide.load_gguf(path)
    load_seconds = time.perf_counter() - started
    lm = harness.KerasLM(model, batch_size=args.batch_size)
    started = time.perf_counter()
    scores = harness.evaluate_tasks(lm, [TASK], include_path=args.out)[TASK]
    eval_seconds = time.perf_counter() - started

    # The same requests again, straight to the model (its batch shapes now
    # compiled), and through llama.cpp's own logits of the same tokens.
    from lm_eval.api.instance import Instance

    pairs = [
        (item["context"], " " + choice) for item in items for choice in item["choices"]
    ]
    started = time.perf_counter()
    keras_ll = np.array(
        [
            v
            for v, _ in lm.loglikelihood(
                [
                    Instance("loglikelihood", {}, pair, i)
                    for i, pair in enumerate(pairs)
                ],
                disable_tqdm=True,
            )
        ]
    )
    warm_seconds = time.perf_counter() - started
    tokens = [lm._encode_pair(*pair) for pair in pairs]
    started = time.perf_counter()
    llama_ll = llama_cpp_loglikelihoods(path, tokens)
    llama_seconds = time.perf_counter() - started
    direct = {
        "keras": accuracies(items, keras_ll),
        "llama.cpp": accuracies(items, llama_ll),
    }
    assert abs(direct["keras"]["acc"] - scores["acc"]) < 1e-12, (direct, scores)
    assert abs(direct["keras"]["acc_norm"] - scores["acc_norm"]) < 1e-12
    gap = np.abs(keras_ll - llama_ll)
    per_token = gap.sum() / sum(len(x) for _, x in tokens)
    result = {
        "model": os.path.basename(path),
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "items": args.items,
        "docstrings": pool,
        "requests": 4 * args.items,
        "batch_size": args.batch_size,
        "scores": scores,
        "load_seconds": round(load_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "llama_cpp": direct["llama.cpp"],
        "loglikelihood_gap_nats": {
            "mean": float(gap.mean()),
            "max": float(gap.max()),
            "per_token": float(per_token),
        },
        "same_choice": float(
            np.mean(
                keras_ll.reshape(-1, 4).argmax(1) == llama_ll.reshape(-1, 4).argmax(1)
            )
        ),
        "llama_cpp_seconds": round(llama_seconds, 1),
        "eval_seconds_compiled": round(warm_seconds, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    table = (
        f"{TASK}: {args.items} items from {pool} qualifying docstrings of Python "
        f"{result['python']}'s standard library, 4 choices each\n"
        f"{result['model']}, KERAS_BACKEND={result['backend']}, batch size "
        f"{args.batch_size}, CPU load average at the end {result['load_average']}\n\n"
        "| metric | Keras (lm-eval) | stderr | llama.cpp, same tokens | chance |\n"
        "|---|---|---|---|---|\n"
        f"| acc | {scores['acc']:.3f} | {scores['acc_stderr']:.3f} | "
        f"{direct['llama.cpp']['acc']:.3f} | 0.250 |\n"
        f"| acc_norm | {scores['acc_norm']:.3f} | {scores['acc_norm_stderr']:.3f} | "
        f"{direct['llama.cpp']['acc_norm']:.3f} | 0.250 |\n\n"
        f"Per request, |log-likelihood(Keras) - log-likelihood(llama.cpp)|: mean "
        f"{gap.mean():.4f}, max {gap.max():.4f} nats ({per_token:.4f} per "
        "continuation token); both pick the same choice "
        f"on {result['same_choice']:.0%} of the items.\n"
        f"load_gguf: {load_seconds:.1f} s; evaluate_tasks ({4 * args.items} "
        f"loglikelihood requests): {eval_seconds:.1f} s the first time (JAX "
        f"compiles each padded batch shape), {warm_seconds:.1f} s again on the "
        f"same KerasLM; llama.cpp's logits of the same tokens: {llama_seconds:.1f} "
        "s\n"
    )
    print(table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()
