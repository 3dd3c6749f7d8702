"""The layout facts `load_gguf` relies on, measured on the real checkpoints.

For each model: the perplexity of a plain-English paragraph written for this
project (no model has seen it) as imported, and again with the one layout fact
of its family undone, plus greedy continuations of a few prompts:

- SmolLM2-135M (Llama): llama.cpp stores query and key rows permuted for its
  own rotary layout; the importer un-permutes them (`llama.unpermute_rows`).
- Gemma 3 270M: llama.cpp stores every RMSNorm gain as `1 + scale`; the
  importer subtracts the one (`gemma3._norm`).

A broken import of a 49,152- or 262,144-token model is in the hundreds or
thousands; a working one is near 10 or below.

Usage:
    KERAS_BACKEND=jax python benchmarks/gguf_facts.py [smollm2 gemma3]
"""

import argparse
import json
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PROMPTS = [
    "One, two, three, four,",
    "The capital of France is",
    "Water boils at a temperature of",
    "To be, or not to be:",
]
# The layout fact of each family, as the patch that undoes it.
UNDONE = {
    "smollm2": (
        "query/key rows left in llama.cpp's rotary order",
        "keras_guide.gguf.llama.unpermute_rows",
        lambda w, n: w,
    ),
    "gemma3": (
        "norm gains keep llama.cpp's folded +1",
        "keras_guide.gguf.gemma3._norm",
        lambda w: w,
    ),
}


def measure(name):
    from keras_guide.checkpoints import PARAGRAPH
    from keras_guide.checkpoints import path as model_path
    from keras_guide.evaluation import perplexity
    from keras_guide.evaluation import token_ids
    from keras_guide.gguf import load_gguf

    path = model_path(name)
    start = time.perf_counter()
    lm = load_gguf(path)
    seconds = time.perf_counter() - start
    ppl, tokens = perplexity(lm, PARAGRAPH), len(token_ids(lm, PARAGRAPH))
    lm.compile(sampler="greedy")
    continuations = {p: lm.generate(p, max_length=24) for p in PROMPTS}
    del lm
    what, target, patch = UNDONE[name]
    with mock.patch(target, patch):
        broken = load_gguf(path)
    broken_ppl = perplexity(broken, PARAGRAPH)
    return dict(
        model=os.path.basename(path),
        import_seconds=seconds,
        paragraph_tokens=tokens,
        perplexity=ppl,
        undone=what,
        perplexity_undone=broken_ppl,
        continuations=continuations,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["smollm2", "gemma3"])
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()
    import keras

    results = {}
    for name in args.models:
        r = results[name] = measure(name)
        backend, seconds = keras.backend.backend(), r["import_seconds"]
        print(f"{r['model']} ({backend}, import {seconds:.1f} s)")
        print(f"  perplexity, {r['paragraph_tokens']} tokens: {r['perplexity']:.2f}")
        print(f"  with {r['undone']}: {r['perplexity_undone']:.4g}")
        for prompt, text in r["continuations"].items():
            print(f"  greedy: {text!r}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
