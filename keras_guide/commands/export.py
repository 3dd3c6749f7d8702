"""`keras-guide export`: a model the CLI reads, written as a .gguf file, a
.keras file, a KerasHub preset or a Hugging Face folder."""

import argparse

from keras_guide.commands._options import GGUF_DTYPES
from keras_guide.commands._options import UsageError
from keras_guide.commands._options import add_gguf_dtype
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import model_help
from keras_guide.workflows import inputs


def add_parser(commands):
    from keras_guide.workflows import export

    parser = commands.add_parser(
        "export",
        help="write a model as a llama.cpp .gguf file, a KerasHub preset "
        "folder, a Hugging Face folder or a .keras file",
    )
    parser.add_argument("model", help=model_help())
    parser.add_argument(
        "--tokenizer-from",
        default=None,
        metavar="GGUF",
        help="copy this GGUF file's tokenizer and context length "
        "(default: the model's own tokenizer)",
    )
    outputs = add_outputs(
        parser,
        "NAME.gguf (llama.cpp), NAME.keras, or a folder for a KerasHub preset "
        "(or, with --format hf, a Hugging Face checkpoint)",
        required=True,
    )
    outputs.add_argument(
        "--format",
        choices=export.FORMATS,
        default=None,
        help="what to write; default: by --out's name (.gguf, "
        ".keras, else a preset folder)",
    )
    add_gguf_dtype(
        outputs,
        dtype_help="tensor type of a .gguf file (of a Hugging Face folder: float32, "
        "float16 or bfloat16; --dtype is its old name)",
    )
    # The name `export` gave `--gguf-dtype` before, kept working.
    outputs.add_argument(
        "--dtype", dest="gguf_dtype", choices=GGUF_DTYPES, help=argparse.SUPPRESS
    )


def _kind(args):
    """What `--format` (or else `--out`'s name) asks for, and `--out`'s
    suffix.

    Raises:
        UsageError: `--out` named for another format, or a Hugging Face
            folder of a type it cannot hold.
    """
    from keras_guide.hf import writer

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
    if kind == "hf" and args.gguf_dtype not in writer.DTYPES:
        raise UsageError(
            f"--format hf writes {', '.join(writer.DTYPES)} weights. "
            f"Received: --gguf-dtype {args.gguf_dtype}"
        )
    return kind, suffix


def run(args):
    from keras_guide.workflows import export

    kind, suffix = _kind(args)
    out = args.out
    inputs.check_exist({"MODEL": args.model})
    if args.tokenizer_from is not None:
        inputs.check_exist({"--tokenizer-from": args.tokenizer_from})
    read = {"MODEL": args.model, "--tokenizer-from": args.tokenizer_from}
    read = {option: path for option, path in read.items() if path is not None}
    inputs.check_outputs(out, [out], read, args.overwrite, out_is_file=True)
    model = inputs.load_model(args.model)
    source = inputs.resolve_model(args.tokenizer_from) if args.tokenizer_from else None
    if kind == "preset":
        export.write_preset(model, out, overwrite=args.overwrite)
    elif kind == "hf":
        from keras_guide.hf import save_hf

        save_hf(
            model,
            out,
            metadata_from=source,
            overwrite=args.overwrite,
            dtype=args.gguf_dtype,
        )
    else:
        base = out[: len(out) - len(suffix)]
        export.export(
            model,
            base,
            [kind],
            gguf_dtype=args.gguf_dtype,
            metadata_from=source,
            overwrite=args.overwrite,
        )
    print(f"Wrote {out}")
