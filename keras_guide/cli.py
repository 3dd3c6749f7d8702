"""`keras-guide`: the command line. Argparse and loading here; the work is in
`keras_guide.workflows` (and `keras_guide.demo` for `demo`).

    keras-guide demo [--quick]            GUIDE's ablation on Shakespeare
    keras-guide init TEACHER --out S.keras --hidden-dim ... [--blocks all]
    keras-guide distill --teacher T --student S --text PATH --out DIR [--resume]
                        [--data-parallel | --model-parallel N]
    keras-guide compare --teacher T --text PATH --out DIR --hidden-dim ...

The Keras backend follows `KERAS_BACKEND`; `--backend` overrides it (the
command restarts itself on that backend).
"""

import argparse
import contextlib
import os
import sys
import time

_BACKENDS = ("jax", "tensorflow", "torch")
# The student's sizes, by the generic names `keras_guide.build_student` takes.
SIZE_NAMES = ("hidden_dim", "num_layers", "num_heads", "num_key_value_heads",
              "intermediate_dim", "head_dim")
_GUIDE_OPTIONS = ("blocks", "layer_map", "projection", "center", "norm")


def _add_sizes(parser):
    group = parser.add_argument_group("student shape (the family's generic names)")
    for name in SIZE_NAMES:
        group.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                           dest=name)


def _sizes(args):
    return {k: getattr(args, k) for k in SIZE_NAMES if getattr(args, k) is not None}


def _add_guide_options(parser):
    group = parser.add_argument_group("GUIDE options (keras_guide.guide)")
    group.add_argument("--blocks", choices=("first", "all"), default=None)
    group.add_argument("--layer-map", choices=("uniform", "first"), default=None)
    group.add_argument("--projection", choices=("auto", "pca", "select"), default=None)
    group.add_argument("--center", action="store_true", default=None)
    group.add_argument("--norm", choices=("fold", "diagonal", "reset"), default=None)


def _guide_options(args):
    return {k: getattr(args, k) for k in _GUIDE_OPTIONS if getattr(args, k) is not None}


def _add_budget(parser, steps, batch_size, learning_rate):
    parser.add_argument("--steps", type=int, default=steps, help=f"default {steps}")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"default {batch_size}")
    parser.add_argument("--learning-rate", type=float, default=learning_rate,
                        help=f"peak AdamW learning rate, default {learning_rate}")


def _add_text(parser):
    parser.add_argument("--text", nargs="+", required=True,
                        help=".txt files or folders (searched recursively)")
    parser.add_argument("--held-out", nargs="+", default=None,
                        help="held-out .txt files or folders (default: every tenth "
                             "file, or the last 10%% of each file)")
    parser.add_argument("--tokenizer", default="auto",
                        help="'auto' (the teacher's), 'demo', or a folder with "
                             "vocabulary.json and merges.txt")
    parser.add_argument("--sequence-length", type=int, default=None)


def _add_demo(commands):
    demo = commands.add_parser(
        "demo", help="GUIDE's ablation on Shakespeare with the shipped teacher")
    demo.add_argument("--quick", action="store_true",
                      help="tiny budget for CI (about a minute; numbers not "
                           "meaningful)")
    demo.add_argument("--out", default="keras_guide_demo", help="output folder")
    demo.add_argument("--steps", type=int, default=None)
    demo.add_argument("--batch-size", type=int, default=None)
    demo.add_argument("--learning-rate", type=float, default=None)
    demo.add_argument("--train-teacher", action="store_true",
                      help="retrain the teacher first (about 30-40 min on 2 CPU "
                           "cores)")


def _add_init(commands):
    init = commands.add_parser("init",
                               help="teacher + student shape -> guided student")
    init.add_argument("teacher",
                      help="'demo', a .keras file or a KerasHub preset folder")
    init.add_argument("--out", required=True, help="student .keras file to write")
    init.add_argument("--seed", type=int, default=0,
                      help="seed of the weights GUIDE leaves random")
    _add_sizes(init)
    _add_guide_options(init)


def _add_distill(commands):
    distill = commands.add_parser("distill", help="train a student with CE + KD")
    distill.add_argument("--teacher", required=True)
    distill.add_argument("--student", required=True,
                         help=".keras file or preset folder")
    distill.add_argument("--out", required=True, help="output folder")
    _add_text(distill)
    _add_budget(distill, 1000, 16, 1e-3)
    distill.add_argument("--student-loss-weight", type=float, default=None,
                         help="α: loss = α·CE + (1 − α)·τ²·KL (Distiller default 0.5)")
    distill.add_argument("--temperature", type=float, default=None,
                         help="τ of the KD term (Distiller default 2.0)")
    distill.add_argument("--checkpoint-every", type=int, default=200)
    distill.add_argument("--data-parallel", action="store_true",
                         help="replicate the models over all devices, split batches "
                              "(JAX; TF: MirroredStrategy)")
    distill.add_argument("--model-parallel", type=int, default=None, metavar="N",
                         help="also shard weights over N devices (JAX "
                              "keras.distribution)")
    distill.add_argument("--resume", action="store_true",
                         help="continue from OUT/checkpoint")


def _add_compare(commands):
    compare = commands.add_parser(
        "compare", help="the ablation on your own teacher, student shape and text")
    compare.add_argument("--teacher", required=True)
    compare.add_argument("--out", required=True, help="output folder")
    _add_text(compare)
    _add_sizes(compare)
    _add_budget(compare, 300, 16, 2e-3)
    compare.add_argument("--eval-windows", type=int, default=None,
                         help="evaluate on this many held-out windows (default: all)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-guide",
        description="GUIDE: initialize a small transformer from a larger teacher "
                    "(arXiv 2510.06502) with Keras 3.",
    )
    parser.add_argument("--backend", choices=_BACKENDS, default=None,
                        help="Keras backend (default: $KERAS_BACKEND)")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_init, _add_distill, _add_compare):
        add(commands)
    return parser


def load_model(path):
    """Loads a teacher or student: `"demo"`, a `.keras` file or a preset folder.

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


def get_encoder(tokenizer, teacher=None):
    """Returns an encoder (`encode(text)`, `end_token_id`) for `tokenizer`.

    Args:
        tokenizer: `"auto"` (the teacher's preprocessor's tokenizer, else the
            demo's BPE), `"demo"`, or a folder with `vocabulary.json` and
            `merges.txt`.
        teacher: the teacher model, for `"auto"`.
    """
    from keras_guide.demo import tokenizer as tokenizer_lib
    from keras_guide.workflows import text

    if tokenizer == "auto":
        encoder = text.model_encoder(teacher)
        if encoder is not None:
            return encoder
        tokenizer = "demo"
    if tokenizer == "demo":
        return tokenizer_lib.load_encoder()
    if os.path.isdir(tokenizer):
        return tokenizer_lib.load_encoder(tokenizer)
    raise ValueError(
        "`tokenizer` must be 'auto', 'demo' or a folder with vocabulary.json and "
        f"merges.txt. Received: tokenizer={tokenizer!r}"
    )


def _windows(args, teacher, student=None):
    """The text's training and held-out windows, in the teacher's tokens, as
    long as the student (else the teacher) allows."""
    from keras_guide.workflows import text

    encoder = get_encoder(args.tokenizer, teacher)
    text.check_vocabulary(encoder, teacher, "teacher")
    if student is not None:
        text.check_vocabulary(encoder, student, "student")
    length = text.sequence_length(teacher if student is None else student,
                                  args.sequence_length)
    return text.text_windows(args.text, encoder, length, args.held_out)


def _set_backend(backend, argv):
    """Makes Keras run on `backend`.

    `import keras_guide` already imports Keras (on `$KERAS_BACKEND`), so a
    different backend needs a fresh interpreter: from the command line the
    process re-executes itself with `KERAS_BACKEND` set; called as a function
    it raises instead.
    """
    if backend is None:
        return
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        return
    import keras

    if keras.backend.backend() == backend:
        return
    if argv is not None:
        raise SystemExit(
            f"--backend {backend}: Keras is already running on "
            f"{keras.backend.backend()}; set KERAS_BACKEND={backend} instead."
        )
    env = dict(os.environ, KERAS_BACKEND=backend)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "keras_guide", *sys.argv[1:]], env)


def _demo(args):
    from keras_guide.demo.demo import run_demo

    run_demo(args.out, quick=args.quick, num_steps=args.steps,
             batch_size=args.batch_size, learning_rate=args.learning_rate,
             train_teacher=args.train_teacher)


def _init(args):
    from keras_guide.workflows.init import init_student

    sizes = _sizes(args)
    if not sizes:
        raise SystemExit("init: give at least one student size, e.g. --hidden-dim 128.")
    report = init_student(load_model(args.teacher), args.out, sizes,
                          _guide_options(args), seed=args.seed)
    print(report)
    print(f"Wrote {args.out}")


def _distribution_scope(args):
    """`--data-parallel` replicates the models and splits batches;
    `--model-parallel N` also shards weights over `N` devices with one layout
    map for teacher and student (planned on models loaded once here, outside
    the distribution; the run loads them again inside it, where their
    variables take their shards).

    Raises:
        NotImplementedError: on PyTorch (no `keras.distribution`), or model
            parallelism on TensorFlow.
    """
    if not args.data_parallel and not args.model_parallel:
        return contextlib.nullcontext()
    from keras_guide.distribution import make_distribution

    if args.model_parallel:
        plan = (load_model(args.teacher), load_model(args.student))
        return make_distribution("model", *plan,
                                 model_parallel=args.model_parallel).scope()
    return make_distribution("data").scope()


def _distill(args):
    from keras_guide.workflows import checkpoint
    from keras_guide.workflows.distill import distill

    kd = {k: v for k, v in (("student_loss_weight", args.student_loss_weight),
                            ("temperature", args.temperature)) if v is not None}
    with _distribution_scope(args):
        teacher = load_model(args.teacher)
        start_step, student = 0, None
        if args.resume:
            directory = checkpoint.checkpoint_dir(args.out)
            start_step, student = checkpoint.restore(directory, args.steps)
        if student is None:
            student = load_model(args.student)
        result = distill(
            teacher, student, _windows(args, teacher, student), args.out,
            num_steps=args.steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, kd_options=kd,
            checkpoint_every=args.checkpoint_every, start_step=start_step,
        )
    print(f"held-out loss {result['held_out_loss']:.4f} (teacher "
          f"{result['teacher_loss']:.4f}); wrote {args.out}/student.keras")


def _compare(args):
    from keras_guide.workflows import ablation
    from keras_guide.workflows.compare import compare

    sizes = _sizes(args)
    if not sizes:
        raise SystemExit("compare: give the student's shape, e.g. --hidden-dim 128.")
    settings = ablation.Settings(
        num_steps=args.steps, batch_size=args.batch_size,
        peak_learning_rate=args.learning_rate,
        warmup_steps=max(1, args.steps // 10), eval_windows=args.eval_windows,
    )
    started = time.perf_counter()
    teacher = load_model(args.teacher)
    compare(teacher, sizes, _windows(args, teacher), settings, args.out,
            meta={"teacher": args.teacher}, started=started)


_COMMANDS = {"demo": _demo, "init": _init, "distill": _distill, "compare": _compare}


def main(argv=None):
    """Entry point of the `keras-guide` console script."""
    args = build_parser().parse_args(argv)
    _set_backend(args.backend, argv)
    _COMMANDS[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
