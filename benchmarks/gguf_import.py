"""Import time and peak memory of `load_gguf` against the model's float32 size.

Targets (issue 14, SmolLM2-135M on the project's 2-core CPU): at most 60 s and
at most 2x the model's float32 size in extra peak memory (resident set above
what the process held after importing Keras, the backend and KerasHub).

Usage:
    KERAS_BACKEND=jax python benchmarks/gguf_import.py [path.gguf | smollm2 | gemma3]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # MiB
    raise RuntimeError(field)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="smollm2")
    args = parser.parse_args()
    import keras  # noqa: F401
    import keras_hub  # noqa: F401

    from keras_guide.checkpoints import path as model_path
    from keras_guide.gguf import load_gguf

    path = model_path(args.model)
    before = _status("VmRSS")
    start = time.perf_counter()
    lm = load_gguf(path)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    params = lm.backbone.count_params()
    float32_mib = params * 4 / 2**20
    print(
        f"model: {os.path.basename(path)} ({params:,} parameters, "
        f"float32 {float32_mib:,.0f} MiB)"
    )
    print(f"backend: {keras.backend.backend()}")
    print(f"import: {seconds:.1f} s (target <= 60 s)")
    print(
        f"peak memory above the imports: {peak - before:,.0f} MiB = "
        f"{(peak - before) / float32_mib:.2f}x the float32 size (target <= 2x)"
    )


if __name__ == "__main__":
    main()
