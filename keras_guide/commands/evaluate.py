"""`keras-guide eval`: llama-perplexity's numbers (and lm-eval tasks) for
models, where each runs."""

from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import UsageError
from keras_guide.commands._options import add_outputs
from keras_guide.commands._options import model_help
from keras_guide.commands._options import number
from keras_guide.workflows import inputs
from keras_guide.workflows.run import folder_outputs

# The keywords of `workflows.evaluate.evaluate` and `evaluate_tasks`, each
# the destination of the option that sets it.
_PERPLEXITY = ("contexts", "base", "max_chunks", "runtime", "threads")
_TASKS = ("include_path", "num_fewshot", "limit", "batch_size")


def _add_perplexity(evaluate):
    from keras_guide.evaluation import runners

    group = evaluate.add_argument_group("perplexity (llama-perplexity's protocol)")
    group.add_argument(
        "--text",
        nargs="+",
        default=None,
        help="text files or folders, joined as `cat` would; "
        "shakespeare:test names the demo's test plays",
    )
    group.add_argument(
        "--context",
        nargs="+",
        type=number(int, 4, False),
        default=[512],
        dest="contexts",
        metavar="TOKENS",
        help="tokens per chunk (llama-perplexity -c), default 512",
    )
    group.add_argument(
        "--chunks",
        type=POSITIVE_INT,
        default=None,
        dest="max_chunks",
        metavar="N",
        help="score the first N chunks only (--chunks)",
    )
    group.add_argument(
        "--base",
        default=None,
        help="a model the others are compared with: KL, same "
        "top p, ln PPL ratio (--kl-divergence)",
    )
    group.add_argument(
        "--runtime",
        choices=runners.RUNTIMES,
        default="auto",
        help="where .gguf files run: llama.cpp (auto) or Keras",
    )
    group.add_argument(
        "--threads",
        type=POSITIVE_INT,
        default=None,
        help="llama.cpp's CPU threads (default: every core)",
    )


def _add_tasks(evaluate):
    group = evaluate.add_argument_group(
        "lm-evaluation-harness (pip install 'keras-guide[eval]'; models run in Keras)"
    )
    group.add_argument(
        "--tasks", nargs="+", default=None, help="lm-eval task names or task YAML files"
    )
    group.add_argument(
        "--task-path",
        nargs="+",
        default=None,
        dest="include_path",
        metavar="FOLDER",
        help="folders of local task YAML files (data on this machine)",
    )
    group.add_argument("--num-fewshot", type=number(int, 0, False), default=None)
    group.add_argument(
        "--limit",
        type=POSITIVE,
        default=None,
        help="examples per task (a share below 1)",
    )
    group.add_argument("--batch-size", type=POSITIVE_INT, default=8)


def add_parser(commands):
    evaluate = commands.add_parser(
        "eval",
        help="perplexity with llama-perplexity's protocol, and KL against "
        "a base model, each model where it runs",
    )
    evaluate.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help=model_help() + " (.gguf files run in llama.cpp)",
    )
    _add_perplexity(evaluate)
    _add_tasks(evaluate)
    add_outputs(evaluate, "folder for eval.json and eval.md", default=None)


def _check(args):
    """Checks the models, texts and `--out` before anything loads; resolves
    the text arguments in `args`."""
    from keras_guide.workflows import evaluate

    if not args.text and not args.tasks:
        raise UsageError(
            "eval: give --text (perplexity with llama-perplexity's "
            "protocol) and/or --tasks (lm-evaluation-harness)."
        )
    if args.base is not None and not args.text:
        raise UsageError("--base compares models on --text: pass --text too.")
    models = {"MODEL": args.models, "--base": [args.base] if args.base else []}
    for option, paths in models.items():
        for path in paths:
            inputs.check_exist({option: path})
    texts = {"--text": args.text or [], "--task-path": args.include_path}
    texts = inputs.resolve_texts(texts)
    args.text, args.include_path = texts["--text"], texts["--task-path"]
    if args.out is not None:
        written = folder_outputs(args.out, (evaluate.JSON_FILE, evaluate.TABLE_FILE))
        inputs.check_outputs(args.out, written, {}, args.overwrite)


def run(args):
    from keras_guide.workflows import evaluate

    _check(args)
    report = {}
    if args.text:
        options = {name: getattr(args, name) for name in _PERPLEXITY}
        report = evaluate.evaluate(args.models, args.text, **options)
    if args.tasks:
        options = {name: getattr(args, name) for name in _TASKS}
        report["tasks"] = evaluate.evaluate_tasks(args.models, args.tasks, **options)
    print(evaluate.render(report))
    if args.out is not None:
        evaluate.write(report, args.out)
        print(f"Wrote {args.out}")
