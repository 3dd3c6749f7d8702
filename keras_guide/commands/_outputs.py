"""The exports a `keras-guide` command writes beside its student: their
paths (checked before anything runs) and the files themselves."""

from keras_guide.workflows import inputs


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
