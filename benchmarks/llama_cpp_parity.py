"""Keras against llama.cpp itself on the real checkpoints: token ids, the
imported teachers, teachers and quarter-size students written by `save_gguf`.

Prints, per checkpoint: how many of the hard texts (`tests/gguf/llama_cpp_test.
TEXTS` and the paragraph) get llama.cpp's ids from the tokenizer `load_gguf`
builds, and from KerasHub's own tokenizer over the same vocabulary; the mean
KL(Keras ‖ llama.cpp) per token and top-1 agreement on the paragraph for the
imported teacher (llama.cpp on its own file, default float16 cache), the
teacher written back as float32, and a quarter-size guided student in
float32, float16 and q8_0 (llama.cpp with a float32 cache).

    KERAS_BACKEND=jax python benchmarks/llama_cpp_parity.py [smollm2 gemma3]
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


def _kl(reference, other):
    from keras_guide.evaluation import log_softmax

    log_p, log_q = log_softmax(reference), log_softmax(other.astype(np.float64))
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())
    return kl, float((reference.argmax(-1) == other.argmax(-1)).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["smollm2", "gemma3"])
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import keras
    import keras_hub
    import llama_cpp

    import keras_guide
    from keras_guide import checkpoints
    from keras_guide import evaluation
    from keras_guide.gguf import runtime
    from tests.gguf.llama_cpp_test import TEXTS

    texts = TEXTS + [checkpoints.PARAGRAPH]
    for name in args.names:
        path = checkpoints.path(name)
        lm = keras_guide.load_gguf(path)
        reference = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        tokenizer = lm.preprocessor.tokenizer
        plain_cls = (
            keras_hub.models.Llama3Tokenizer
            if name == "smollm2"
            else keras_hub.models.Gemma3Tokenizer
        )
        ours = same_plain = 0
        for text in texts:
            want = reference.tokenize(text.encode(), add_bos=False, special=False)
            got = keras.ops.convert_to_numpy(tokenizer(text)).tolist() if text else []
            ours += got == want
            # KerasHub's own tokenize over the same vocabulary (the class the
            # GGUF tokenizer extends), as the importer built it before.
            plain = plain_cls.tokenize(tokenizer, text) if text else []
            same_plain += keras.ops.convert_to_numpy(plain).tolist() == want
        print(
            f"{name}: llama.cpp's ids for {ours} of {len(texts)} texts "
            f"(KerasHub's own tokenizer: {same_plain} of {len(texts)})"
        )
        ids = evaluation.token_ids(lm, checkpoints.PARAGRAPH)
        z = evaluation.logits(lm, ids)
        kl, top1 = _kl(z, runtime.logits(path, [ids])[0])
        print(
            f"  imported teacher vs llama.cpp on {os.path.basename(path)}: "
            f"KL {kl:.2g}, top-1 {top1:.1%} ({len(ids)} tokens)"
        )
        with tempfile.TemporaryDirectory() as folder:
            out = keras_guide.save_gguf(
                lm, os.path.join(folder, "t.gguf"), metadata_from=path
            )
            kl, top1 = _kl(z, runtime.logits(out, [ids], kv_float32=True)[0])
            print(f"  teacher written back, float32: KL {kl:.2g}, top-1 {top1:.1%}")
            os.remove(out)
            student = keras_guide.build_student(lm, **STUDENTS[name])
            keras_guide.guide(lm, student)
            z = evaluation.logits(student, ids)
            for dtype in ("float32", "float16", "q8_0"):
                out = keras_guide.save_gguf(
                    student, os.path.join(folder, "s.gguf"), dtype=dtype, overwrite=True
                )
                kl, top1 = _kl(z, runtime.logits(out, [ids], kv_float32=True)[0])
                print(
                    f"  quarter-size guided student, {dtype}: KL {kl:.2g}, "
                    f"top-1 {top1:.1%}"
                )
        del lm


if __name__ == "__main__":
    main()
