"""`keras-guide eval`: llama-perplexity's numbers (and lm-eval tasks) for
models, where each runs."""

from keras_guide.commands._inputs import UsageError
from keras_guide.commands._inputs import folder_outputs
from keras_guide.commands._inputs import text_paths
from keras_guide.commands._options import POSITIVE
from keras_guide.commands._options import POSITIVE_INT
from keras_guide.commands._options import add_common
from keras_guide.commands._options import number
from keras_guide.workflows import inputs


def add_parser(commands):
    from keras_guide.evaluation import runners

    evaluate = commands.add_parser(
        "eval",
        help="perplexity with llama-perplexity's protocol, and KL against "
        "a base model, each model where it runs",
    )
    evaluate.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help=".gguf files (run by llama.cpp), .keras files, "
        "preset folders or packaged names",
    )
    evaluate.add_argument(
        "--text",
        nargs="+",
        default=None,
        help="text files or folders, joined as `cat` would; "
        "shakespeare:test names the demo's test plays",
    )
    evaluate.add_argument(
        "--context",
        nargs="+",
        type=number(int, 4, False),
        default=[512],
        help="tokens per chunk (llama-perplexity -c), default 512",
    )
    evaluate.add_argument(
        "--chunks",
        type=POSITIVE_INT,
        default=None,
        help="score the first N chunks only (--chunks)",
    )
    evaluate.add_argument(
        "--base",
        default=None,
        help="a model the others are compared with: KL, same "
        "top p, ln PPL ratio (--kl-divergence)",
    )
    evaluate.add_argument(
        "--runtime",
        choices=runners.RUNTIMES,
        default="auto",
        help="where .gguf files run: llama.cpp (auto) or Keras",
    )
    evaluate.add_argument(
        "--threads",
        type=POSITIVE_INT,
        default=None,
        help="llama.cpp's CPU threads (default: every core)",
    )
    evaluate.add_argument(
        "--out", default=None, help="folder for eval.json and eval.md"
    )
    tasks = evaluate.add_argument_group(
        "lm-evaluation-harness (pip install 'keras-guide[eval]'; models run in Keras)"
    )
    tasks.add_argument(
        "--tasks", nargs="+", default=None, help="lm-eval task names or task YAML files"
    )
    tasks.add_argument(
        "--task-path",
        nargs="+",
        default=None,
        help="folders of local task YAML files (data on this machine)",
    )
    tasks.add_argument("--num-fewshot", type=number(int, 0, False), default=None)
    tasks.add_argument(
        "--limit",
        type=POSITIVE,
        default=None,
        help="examples per task (a share below 1)",
    )
    tasks.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    add_common(evaluate)


def run(args):
    from keras_guide.workflows import evaluate

    if not args.text and not args.tasks:
        raise UsageError(
            "eval: give --text (perplexity with llama-perplexity's "
            "protocol) and/or --tasks (lm-evaluation-harness)."
        )
    if args.base is not None and not args.text:
        raise UsageError("--base compares models on --text: pass --text too.")
    args.text = text_paths(args.text or [])
    for model in args.models:
        inputs.check_exist({"MODEL": model})
    if args.base is not None:
        inputs.check_exist({"--base": args.base})
    for path in args.text + (args.task_path or []):
        inputs.check_exist({"--text" if path in args.text else "--task-path": path})
    if args.out is not None:
        written = folder_outputs(args.out, (evaluate.JSON_FILE, evaluate.TABLE_FILE))
        inputs.check_outputs(args.out, written, {}, args.overwrite)
    report = (
        evaluate.evaluate(
            args.models,
            args.text,
            contexts=args.context,
            base=args.base,
            max_chunks=args.chunks,
            runtime=args.runtime,
            threads=args.threads,
        )
        if args.text
        else {}
    )
    if args.tasks:
        report["tasks"] = evaluate.evaluate_tasks(
            args.models,
            args.tasks,
            include_path=args.task_path,
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            batch_size=args.batch_size,
        )
    print(evaluate.render(report))
    if args.out is not None:
        evaluate.write(report, args.out)
        print(f"Wrote {args.out}")
