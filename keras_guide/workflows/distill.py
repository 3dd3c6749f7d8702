"""The library calls behind `keras-guide init`, `distill` and `compare`.

They work on the user's own KerasHub causal LMs (a `.keras` file or a preset
folder) and text files. Text is tokenized with the teacher's own tokenizer
(its preprocessor's), the demo's BPE (`"demo"`), or a folder holding GPT-2
style `vocabulary.json` and `merges.txt`.
"""

import json
import os
import time

import numpy as np

from keras_guide.adapters import backbone_of
from keras_guide.demo import ablation
from keras_guide.demo import data as data_lib
from keras_guide.demo import training

SIZE_NAMES = ("hidden_dim", "num_layers", "num_heads", "num_key_value_heads",
              "intermediate_dim", "head_dim")


def load_model(path):
    """Loads a teacher or student: `"demo"`, a `.keras` file or a KerasHub preset folder.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is neither a `.keras` file nor a preset folder.
    """
    if path == "demo":
        from keras_guide.demo import models

        return models.load_teacher()
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at {path!r}.")
    import keras
    import keras_hub

    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(
                "A model file must be a `.keras` archive (model.save(...)). "
                f"Received: {path!r}"
            )
        return keras.saving.load_model(path)
    if not os.path.exists(os.path.join(path, "config.json")):
        raise ValueError(
            f"{path!r} is a folder without config.json: not a KerasHub preset. Pass "
            "a `.keras` file or a preset folder (`model.save_to_preset(folder)`)."
        )
    try:
        return keras_hub.models.CausalLM.from_preset(path)
    except Exception:  # noqa: BLE001 (a preset without a task: load the backbone)
        return keras_hub.models.Backbone.from_preset(path)


class _HubEncoder:
    """`encode`/`end_token_id` over a KerasHub tokenizer, line by line."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocabulary_size = tokenizer.vocabulary_size()
        self.end_token_id = getattr(tokenizer, "end_token_id", None)
        if self.end_token_id is None:
            self.end_token_id = getattr(tokenizer, "pad_token_id", 0) or 0

    def encode(self, text):
        lines = text.splitlines(keepends=True)
        ids = []
        for start in range(0, len(lines), 256):
            for row in self.tokenizer(lines[start: start + 256]):
                ids.extend(int(i) for i in np.asarray(row).reshape(-1))
        return ids


def get_encoder(tokenizer, teacher=None):
    """Returns an encoder (`encode(text)`, `end_token_id`) for `tokenizer`.

    Args:
        tokenizer: `"auto"` (the teacher's preprocessor's tokenizer, else the
            demo's BPE), `"demo"`, or a folder with `vocabulary.json` and
            `merges.txt`.
        teacher: the teacher model, for `"auto"`.
    """
    from keras_guide.demo import tokenizer as tokenizer_lib

    if tokenizer == "auto":
        preprocessor = getattr(teacher, "preprocessor", None)
        if preprocessor is not None and getattr(preprocessor, "tokenizer", None):
            return _HubEncoder(preprocessor.tokenizer)
        tokenizer = "demo"
    if tokenizer == "demo":
        return tokenizer_lib.load_encoder()
    if os.path.isdir(tokenizer):
        return tokenizer_lib.load_encoder(tokenizer)
    raise ValueError(
        "`tokenizer` must be 'auto', 'demo' or a folder with vocabulary.json and "
        f"merges.txt. Received: tokenizer={tokenizer!r}"
    )


def check_vocabulary(encoder, model, role):
    """Raises a `ValueError` if `encoder` yields ids beyond `model`'s vocabulary."""
    size = getattr(encoder, "vocabulary_size", None)
    if callable(size):
        size = size()
    backbone = backbone_of(model)
    vocab = getattr(backbone, "vocabulary_size", None)
    if size is not None and vocab is not None and size > vocab:
        raise ValueError(
            f"The tokenizer has {size} tokens but the {role} a vocabulary of "
            f"{vocab}. Pass the tokenizer the {role} was trained with (--tokenizer)."
        )


def text_windows(paths, encoder, sequence_length, held_out=None):
    """Tokenizes text files into training and held-out windows.

    The held-out text is `held_out` (files or folders) when given; otherwise
    every tenth file (sorted) when there are at least ten, else the last 10 %
    of each file's tokens. The rule is fixed: it never looks at results.

    Returns:
        `(train, held_out)`, each `(tokens, mask)` from `data.make_windows`.
    """
    files = sorted({f for p in paths for f in data_lib.text_files(p)})
    held_files = sorted({f for p in (held_out or []) for f in data_lib.text_files(p)})

    def docs(names):
        texts = []
        for name in names:
            with open(name, encoding="utf-8", errors="replace") as f:
                texts.append(data_lib.strip_gutenberg(f.read()))
        return data_lib.tokenize_documents(texts, encoder)

    if held_files:
        train_docs = docs([f for f in files if f not in held_files])
        held_docs = docs(held_files)
    elif len(files) >= 10:
        train_docs = docs([f for i, f in enumerate(files) if i % 10 != 9])
        held_docs = docs([f for i, f in enumerate(files) if i % 10 == 9])
    else:
        train_docs, held_docs = [], []
        for doc in docs(files):
            cut = int(len(doc) * 0.9)
            train_docs.append(doc[:cut])
            held_docs.append(doc[cut:])
    pad = encoder.end_token_id
    return (data_lib.make_windows(train_docs, sequence_length, pad),
            data_lib.make_windows(held_docs, sequence_length, pad))


def _sequence_length(model, requested):
    limit = model.backbone.get_config().get("max_sequence_length")
    if requested is None:
        return min(limit or 128, 128)
    if limit is not None and requested > limit:
        raise ValueError(
            f"`sequence_length` must be at most the model's max_sequence_length "
            f"({limit}). Received: sequence_length={requested}"
        )
    return int(requested)


def init_student(teacher_path, out_path, sizes, guide_options=None, seed=0):
    """Builds a student of the teacher's family, GUIDE-initializes it, saves it.

    Returns:
        The `GuideReport`.
    """
    import keras

    import keras_guide

    teacher = load_model(teacher_path)
    keras.utils.set_random_seed(int(seed))
    student = keras_guide.build_student(teacher, **sizes)
    report = keras_guide.guide(teacher, student, **(guide_options or {}))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    student.save(out_path)
    return report


def _save_optimizer(optimizer, path):
    import keras

    arrays = {f"{i:05d}": keras.ops.convert_to_numpy(v)
              for i, v in enumerate(optimizer.variables)}
    np.savez(path, **arrays)


def _load_optimizer(optimizer, variables, path):
    optimizer.build(variables)
    with np.load(path) as archive:
        keys = sorted(archive.files)
        if len(keys) != len(optimizer.variables):
            raise ValueError(
                f"The checkpoint's optimizer has {len(keys)} variables, this one "
                f"{len(optimizer.variables)}: it was written for another student."
            )
        for key, variable in zip(keys, optimizer.variables):
            variable.assign(archive[key])


def distiller_arguments(kd_options=None):
    """Maps `{"temperature": τ, "student_loss_weight": α}` to `Distiller` arguments."""
    from keras_guide.distillation import LogitsDistillation

    options = dict(kd_options or {})
    arguments = {}
    if "temperature" in options:
        arguments["distillation_losses"] = LogitsDistillation(
            temperature=options.pop("temperature"))
    if "student_loss_weight" in options:
        arguments["student_loss_weight"] = options.pop("student_loss_weight")
    if options:
        raise ValueError(
            "`kd_options` accepts 'temperature' and 'student_loss_weight'. "
            f"Received: kd_options={kd_options!r}"
        )
    return arguments


def distill(teacher_path, student_path, texts, out_dir, data_parallel=False,
            model_parallel=None, **options):
    """`_distill` under a distribution: `data_parallel` replicates the models
    and splits batches; `model_parallel=N` also shards weights over `N`
    devices with one layout map for teacher and student (planned on models
    loaded once outside the distribution, then loaded again inside it, where
    their variables take their shards).

    Raises:
        NotImplementedError: on PyTorch (no `keras.distribution`), or model
            parallelism on TensorFlow.
    """
    if not data_parallel and not model_parallel:
        return _distill(teacher_path, student_path, texts, out_dir, **options)
    from keras_guide.distribution import make_distribution

    if model_parallel:
        plan = (load_model(teacher_path), load_model(student_path))
        distribution = make_distribution("model", *plan, model_parallel=model_parallel)
    else:
        distribution = make_distribution("data")
    with distribution.scope():
        return _distill(teacher_path, student_path, texts, out_dir, **options)


def _distill(teacher_path, student_path, texts, out_dir, num_steps=1000, batch_size=16,
             sequence_length=None, learning_rate=1e-3, warmup_steps=None,
             kd_options=None, tokenizer="auto", held_out=None, checkpoint_every=200,
             resume=False, seed=0, verbose=True):
    """Trains a student with the `Distiller` (CE + KD) on text files.

    Writes `out_dir/student.keras` at the end and, every `checkpoint_every`
    steps, `out_dir/checkpoint/` (the student, the optimizer's variables and
    the step); `resume=True` continues from there with the same data order.

    Returns:
        dict with `held_out_loss`, `teacher_loss`, `steps`, `train_seconds`.
    """
    import keras

    from keras_guide.distillation import Distiller

    teacher = load_model(teacher_path)
    checkpoint = os.path.join(out_dir, "checkpoint")
    state_path = os.path.join(checkpoint, "state.json")
    start_step = 0
    if resume and os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
        if int(state["num_steps"]) != int(num_steps):
            raise ValueError(
                f"The checkpoint in {checkpoint} belongs to a run of "
                f"{state['num_steps']} steps (its learning-rate schedule depends on "
                f"it); resume with the same `num_steps`. Received: num_steps={num_steps}"
            )
        start_step = int(state["step"])
        student = keras.saving.load_model(os.path.join(checkpoint, "student.keras"))
    else:
        student = load_model(student_path)
    encoder = get_encoder(tokenizer, teacher)
    check_vocabulary(encoder, teacher, "teacher")
    check_vocabulary(encoder, student, "student")
    length = _sequence_length(student, sequence_length)
    train_windows, held_windows = text_windows(texts, encoder, length, held_out)
    batches = data_lib.Batches(*train_windows, batch_size=batch_size, seed=seed)
    held = data_lib.eval_batches(*held_windows, batch_size=max(batch_size, 16))
    warmup = warmup_steps if warmup_steps is not None else max(1, num_steps // 10)
    optimizer = training.adamw(learning_rate, num_steps, warmup)
    distiller = Distiller(teacher, student, **distiller_arguments(kd_options))
    distiller.compile(optimizer=optimizer)
    if start_step:
        _load_optimizer(optimizer, student.trainable_variables,
                        os.path.join(checkpoint, "optimizer.npz"))

    def save_checkpoint(step, _loss):
        if step == start_step or step % checkpoint_every and step != num_steps:
            return
        os.makedirs(checkpoint, exist_ok=True)
        student.save(os.path.join(checkpoint, "student.keras"))
        _save_optimizer(optimizer, os.path.join(checkpoint, "optimizer.npz"))
        with open(state_path, "w") as f:
            json.dump({"step": int(step), "num_steps": int(num_steps)}, f)

    history = training.train(
        distiller, batches, num_steps, start_step=start_step,
        evaluate=lambda _: data_lib.evaluate(student, held),
        eval_every=max(1, min(checkpoint_every, num_steps)), verbose=verbose,
        label=f"Distilling {num_steps - start_step} steps", on_eval=save_checkpoint,
    )
    student.save(os.path.join(out_dir, "student.keras"))
    result = {
        "held_out_loss": history["eval_loss"][-1],
        "teacher_loss": data_lib.evaluate(teacher, held),
        "steps": num_steps,
        "start_step": start_step,
        "train_seconds": history["train_seconds"],
        "tokens": history["tokens"],
    }
    with open(os.path.join(out_dir, "distill.json"), "w") as f:
        json.dump({**result, "history": history}, f, indent=1)
    return result


def compare(teacher_path, texts, out_dir, sizes, settings, tokenizer="auto",
            held_out=None, sequence_length=None, variants=ablation.DEFAULT_VARIANTS,
            verbose=True):
    """The demo's ablation on the user's teacher, student shape and text.

    Returns:
        `(results, teacher_loss)`; writes the same files as the demo.
    """
    import dataclasses

    import keras

    import keras_guide

    start = time.perf_counter()
    teacher = load_model(teacher_path)
    encoder = get_encoder(tokenizer, teacher)
    check_vocabulary(encoder, teacher, "teacher")
    length = _sequence_length(teacher, sequence_length)
    train_windows, held_windows = text_windows(texts, encoder, length, held_out)
    train = data_lib.Batches(*train_windows, batch_size=settings.batch_size,
                             seed=settings.data_seed)
    held = data_lib.eval_batches(*held_windows, batch_size=16,
                                 max_windows=settings.eval_windows)
    curve = data_lib.eval_batches(*held_windows, batch_size=16,
                                  max_windows=settings.curve_windows)

    def make_student(seed):
        keras.utils.set_random_seed(int(seed))
        return keras_guide.build_student(teacher, **sizes)

    results, best, teacher_loss = ablation.run_ablation(
        teacher, make_student, train, held, settings, variants=variants,
        curve_batches=curve, verbose=verbose,
    )
    meta = {"backend": keras.backend.backend(), "settings": dataclasses.asdict(settings),
            "sizes": sizes, "teacher": teacher_path,
            "wall_seconds": time.perf_counter() - start}
    ablation.save_results(results, teacher_loss, out_dir, meta)
    ablation.plot(results, teacher_loss, os.path.join(out_dir, "ablation.png"))
    best.save(os.path.join(out_dir, "best_student.keras"))
    if verbose:
        print()
        print(ablation.format_table(results, teacher_loss))
    return results, teacher_loss
