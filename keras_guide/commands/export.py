"""`keras-guide export`: a model the CLI reads, written as a .gguf file, a
.keras file, a KerasHub preset or a Hugging Face folder."""

import os

from keras_guide.commands._inputs import UsageError
from keras_guide.commands._inputs import load_model
from keras_guide.commands._options import add_common
from keras_guide.gguf.dtypes import DTYPES as GGUF_DTYPES
from keras_guide.workflows import inputs


def add_parser(commands):
    export = commands.add_parser(
        "export",
        help="write a model as a llama.cpp .gguf file, a KerasHub preset "
        "folder, a Hugging Face folder or a .keras file",
    )
    export.add_argument(
        "model",
        help="a .keras file, a .gguf file, a KerasHub "
        "preset folder or a packaged checkpoint name",
    )
    export.add_argument(
        "--out",
        required=True,
        help="NAME.gguf (llama.cpp), NAME.keras, or a folder for a "
        "KerasHub preset (or, with --format hf, a Hugging Face "
        "checkpoint)",
    )
    export.add_argument(
        "--format",
        choices=("gguf", "keras", "preset", "hf"),
        default=None,
        help="what to write; default: by --out's name (.gguf, "
        ".keras, else a preset folder)",
    )
    export.add_argument(
        "--dtype",
        default="float32",
        choices=GGUF_DTYPES,
        help="tensor type of a .gguf file (of a Hugging Face "
        "folder: float32, float16 or bfloat16), default "
        "float32",
    )
    export.add_argument(
        "--tokenizer-from",
        default=None,
        metavar="GGUF",
        help="copy this GGUF file's tokenizer and context length "
        "(default: the model's own tokenizer)",
    )
    add_common(export)


# The weight types a Hugging Face folder holds (`keras_guide.hf.save_hf`).
_HF_DTYPES = ("float32", "float16", "bfloat16")


def run(args):
    from keras_guide.workflows import export

    out = args.out
    kind = args.format or (
        "gguf"
        if out.endswith(".gguf")
        else "keras"
        if out.endswith(".keras")
        else "preset"
    )
    suffix = {"gguf": ".gguf", "keras": ".keras"}.get(kind, "")
    if not out.endswith(suffix):
        raise UsageError(
            f"--format {kind} writes a {suffix} file: name --out "
            f"NAME{suffix}. Received: --out {out}"
        )
    if kind == "hf" and args.dtype not in _HF_DTYPES:
        raise UsageError(
            f"--format hf writes {', '.join(_HF_DTYPES)} weights. "
            f"Received: --dtype {args.dtype}"
        )
    base = out[: len(out) - len(suffix)]
    inputs.check_exist({"MODEL": args.model})
    if args.tokenizer_from is not None:
        inputs.check_exist({"--tokenizer-from": args.tokenizer_from})
    inputs.check_not_input(
        out,
        [out],
        {"MODEL": args.model, "--tokenizer-from": args.tokenizer_from or "demo"},
    )
    if os.path.exists(out) and not args.overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it.")
    parent = os.path.dirname(inputs.real(out))
    from keras_guide.workflows.distill import check_writable

    check_writable(parent)
    model = load_model(args.model)
    source = inputs.resolve_model(args.tokenizer_from) if args.tokenizer_from else None
    if kind == "preset":
        export.write_preset(model, out, overwrite=args.overwrite)
    elif kind == "hf":
        from keras_guide.hf import save_hf

        save_hf(
            model, out, metadata_from=source, overwrite=args.overwrite, dtype=args.dtype
        )
    else:
        export.export(
            model,
            base,
            [kind],
            gguf_dtype=args.dtype,
            metadata_from=source,
            overwrite=args.overwrite,
        )
    print(f"Wrote {out}")
