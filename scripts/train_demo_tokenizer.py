"""Trains the demo's byte-level BPE on the training plays and writes its assets.

Usage: python scripts/train_demo_tokenizer.py [--vocabulary-size 2048] [--out DIR]
Only the training split of `keras_guide.demo.data` is read: the held-out plays
never shape the vocabulary.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from keras_guide.demo import data  # noqa: E402
from keras_guide.demo import tokenizer  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary-size", type=int, default=2048)
    parser.add_argument("--out", default=tokenizer.ASSETS_DIR)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    names = data.split_names()["train"]
    counts = tokenizer.word_counts(data.load_texts(names))
    vocabulary, merges = tokenizer.train_bpe(counts, args.vocabulary_size)
    tokenizer.save_bpe(vocabulary, merges, args.out)
    print(
        f"{len(names)} training texts, {len(counts)} distinct words, "
        f"{len(vocabulary)} tokens, {len(merges)} merges, "
        f"{time.perf_counter() - start:.1f}s -> {args.out}"
    )


if __name__ == "__main__":
    main()
