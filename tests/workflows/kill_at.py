"""Runs `keras-guide` and SIGKILLs itself at one stage of one checkpoint save.

    python -m tests.workflows.kill_at STAGE STEP keras-guide-arguments...

`STAGE` is one of `checkpoint.STAGES`, or `final:` followed by a file the
run writes at its end (`final:student.keras:tmp`, ...). At a `:tmp` stage
the temporary file is first cut to half its length, as a write torn by the
kill would leave it. Not a test module (no `_test` suffix): the crash test
starts it as a real process.
"""

import glob
import os
import signal
import sys

from keras_guide import _files
from keras_guide import cli
from keras_guide.workflows import checkpoint


def _tear(directory):
    for path in glob.glob(os.path.join(directory, _files.TMP_PREFIX + "*")):
        with open(path, "rb+") as f:
            f.truncate(os.path.getsize(path) // 2)


def main(stage, step, argv):
    out = argv[argv.index("--out") + 1]

    def kill_at(name, at_step):
        if name != stage or int(at_step) != step:
            return
        if name.endswith(":tmp"):
            final = name.startswith("final:")
            _tear(
                out
                if final
                else os.path.join(
                    checkpoint.checkpoint_dir(out), f"{checkpoint.SET_PREFIX}{step:08d}"
                )
            )
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._stage = kill_at
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
