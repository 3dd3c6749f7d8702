"""Keras against `transformers` itself on the real checkpoints: a quarter-size
guided student of each written by `save_hf`, and its tokenizer.

Prints, per checkpoint: how many of the hard texts (`tests/gguf/llama_cpp_test.
TEXTS`, chat markers and the paragraph) get llama.cpp's ids from
`AutoTokenizer` on the folder, with special tokens in the text parsed and not;
the mean KL(Keras ‖ transformers) per token and top-1 agreement on the
paragraph for the student (float32, transformers in a process of its own that
never imports keras_guide); and whether `load_hf` gives the Keras logits back.

    KERAS_BACKEND=jax python benchmarks/hf_parity.py [smollm2 gemma3]
"""

import argparse
import os
import sys
import tempfile

import numpy as np

STUDENTS = {
    "smollm2": dict(
        num_layers=8,
        hidden_dim=384,
        num_heads=6,
        num_key_value_heads=2,
        intermediate_dim=1024,
    ),
    "gemma3": dict(
        num_layers=7,
        hidden_dim=384,
        num_heads=2,
        num_key_value_heads=1,
        intermediate_dim=1024,
    ),
}
CHAT = [
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["smollm2", "gemma3"])
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import keras_guide
    from keras_guide import checkpoints
    from keras_guide import evaluation
    from keras_guide.hf import load_hf
    from keras_guide.hf import save_hf
    from tests.gguf.llama_cpp_test import TEXTS
    from tests.hf import reference

    texts = TEXTS + CHAT + [checkpoints.PARAGRAPH]
    for name in args.names:
        path = checkpoints.path(name)
        teacher = keras_guide.load_gguf(path)
        student = keras_guide.build_student(teacher, **STUDENTS[name])
        keras_guide.guide(teacher, student)
        ids = evaluation.token_ids(teacher, checkpoints.PARAGRAPH)
        ours = evaluation.logits(student, ids).astype(np.float64)
        with tempfile.TemporaryDirectory() as folder:
            out = save_hf(student, os.path.join(folder, "student"), metadata_from=path)
            size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
            (answer,), (theirs,) = reference.transformers_answers(
                [{"folder": out, "ids": [int(i) for i in ids], "texts": texts}], folder
            )
            want = reference.llama_cpp_ids(path, texts)
            back = evaluation.logits(load_hf(out), ids).astype(np.float64)
        parsed = sum(a == b for a, b in zip(answer["ids"], want[True]))
        unparsed = sum(a == b for a, b in zip(answer["ids_split_special"], want[False]))
        kl, top1 = reference.kl_and_agreement(ours, theirs)
        print(
            f"{name}: AutoTokenizer gives llama.cpp's ids for {parsed} of "
            f"{len(texts)} texts (special tokens parsed), {unparsed} of "
            f"{len(texts)} (not parsed)"
        )
        print(
            f"  quarter-size guided student "
            f"({sum(int(np.prod(w.shape)) for w in student.backbone.weights):,} "
            f"parameters, folder {size / 2**20:.0f} MiB) in transformers "
            f"({answer['class']}, float32): KL {kl:.2g}, top-1 {top1:.1%} "
            f"({len(ids)} tokens)"
        )
        print(
            f"  load_hf of the folder against the student: max |Δlogit| "
            f"{np.abs(back - ours).max():.2g}"
        )


if __name__ == "__main__":
    main()
