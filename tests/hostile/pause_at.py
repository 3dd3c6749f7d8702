"""Runs `keras-guide` and holds it still at its first checkpoint save.

    python -m tests.hostile.pause_at SIGNALS keras-guide-arguments...

At the start of step 1's checkpoint save the run writes `SIGNALS/paused`,
then waits (at most ten minutes) for `SIGNALS/go` before it goes on: a run
caught while it runs, for the tests of two runs in one folder. Not a test
module (no `_test` suffix): the test starts it as a real process.
"""

import os
import sys
import time

from keras_guide import cli
from keras_guide.workflows import checkpoint


def main(signals, argv):
    def pause(name, step):
        if name != "begin" or int(step) != 1:
            return
        with open(os.path.join(signals, "paused"), "w") as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + 600
        while not os.path.exists(os.path.join(signals, "go")):
            if time.monotonic() > deadline:
                raise TimeoutError("nobody released the paused run")
            time.sleep(0.05)

    checkpoint._stage = pause
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
