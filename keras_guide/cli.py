"""`keras-guide`: the command line. The parser and the table of commands here;
each command's options and run in `keras_guide.commands`, the work in
`keras_guide.workflows` (and `keras_guide.demo` for `demo`).

    keras-guide demo [--quick]            GUIDE's ablation on Shakespeare
    keras-guide init TEACHER --out S.keras --hidden-dim ... [--blocks all]
    keras-guide distill --teacher T --student S --text PATH --out DIR [--resume]
                        [--data-parallel | --model-parallel N]
    keras-guide compare --teacher T --text PATH --out DIR --hidden-dim ...
    keras-guide compress TEACHER --size 25% --text TRAIN --out DIR [--eval TEXT]
    keras-guide export MODEL --out NAME.gguf|NAME.keras|PRESET_FOLDER
    keras-guide eval MODEL [MODEL ...] --text TEXT [--context 512 2048]
                     [--base MODEL]    llama-perplexity's numbers, where each runs

The Keras backend follows `KERAS_BACKEND`; `--backend` overrides it (the
command restarts itself on that backend).

A mistake (a bad option, a missing file, a refused input, an `--out` that
holds a previous run) is answered with one line on stderr saying what was
wrong and what to do, and exit code 2; any other error with one line and
exit code 1; an interruption with exit code 130. `--debug` shows the
traceback instead.
"""

import argparse
import os
import sys

from keras_guide.commands import compare
from keras_guide.commands import compress
from keras_guide.commands import demo
from keras_guide.commands import distill
from keras_guide.commands import evaluate
from keras_guide.commands import export
from keras_guide.commands import init
from keras_guide.commands._options import BACKENDS
from keras_guide.workflows import run

# Exit codes: a user's mistake (as argparse), any other error, an interruption.
EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """Answers a parsing mistake with one line (argparse prints the usage too)."""

    def error(self, message):
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        )


def build_parser():
    parser = _Parser(
        prog="keras-guide",
        description="GUIDE: initialize a small transformer from a larger teacher "
        "(arXiv 2510.06502) with Keras 3.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    for command in (demo, init, distill, compare, compress, export, evaluate):
        command.add_parser(commands)
    return parser


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


_COMMANDS = {
    "demo": demo.run,
    "init": init.run,
    "distill": distill.run,
    "compare": compare.run,
    "compress": compress.run,
    "export": export.run,
    "eval": evaluate.run,
}


# Errors a user can fix from the message alone (bad input, missing or
# unwritable files, a missing optional package, a diverged run).
_USER_ERRORS = (
    ValueError,
    OSError,
    ImportError,
    NotImplementedError,
    FloatingPointError,
)


def main(argv=None):
    """Entry point of the `keras-guide` console script.

    Returns:
        The exit code: 0, `EXIT_USAGE` for a mistake the message explains,
        `EXIT_ERROR` for any other error, `EXIT_INTERRUPTED` on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    _set_backend(args.backend, argv)
    try:
        with run.run_folder_scope():  # a run folder is the command's alone
            _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = (
            " --resume continues from the last checkpoint."
            if (args.command in ("distill", "compress"))
            else ""
        )
        print(f"keras-guide {args.command}: interrupted.{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 (every error: one line, or --debug)
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, _USER_ERRORS):
            print(f"keras-guide {args.command}: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"keras-guide {args.command}: unexpected {type(error).__name__}: "
            f"{message} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
