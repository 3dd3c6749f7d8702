"""Several processes, one run: `keras.distribution.initialize` for `compress`.

Keras starts a multi-process (multi-host) JAX run from three environment
variables set for each process, the coordinator's address, the process count
and the process's index:

    KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:12345
    KERAS_DISTRIBUTION_NUM_PROCESSES=2
    KERAS_DISTRIBUTION_PROCESS_ID=0   # 1 in the other process

Every process then runs the same program in lockstep: each step's batch is
the same global batch, each process feeding its own rows
(`jax.make_array_from_process_local_data` joins them), and every weight is
replicated over the devices of all processes. Process 0 writes the run
folder; the others write what the run writes into a private folder removed at
their exit, so one report exists. A resume reads process 0's folder, which
must therefore be on a file system every host sees (on one machine it is).
"""

import contextlib
import os
import shutil
import tempfile

import keras
import numpy as np

# Keras' own variable names (`keras.distribution.initialize()` reads them).
ENV = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def requested():
    """The process count the environment asks for (1 when it asks for none).

    Raises:
        ValueError: `KERAS_DISTRIBUTION_NUM_PROCESSES` not a positive integer.
    """
    text = os.environ.get(ENV[1], "1").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"{ENV[1]} must be a positive integer (the number of "
            f"processes of the run). Received: {text!r}"
        )
    return int(text)


def initialize():
    """Joins the processes named by the environment (once; 1 process: no-op).

    Returns:
        `(process_id, process_count)`.

    Raises:
        ValueError: a multi-process environment off the JAX backend, or
            without the coordinator's address or this process's index.
    """
    count = requested()
    if count == 1:
        return 0, 1
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{ENV[1]}={count} asks for a multi-process run, which "
            "keras.distribution runs on the JAX backend; set KERAS_BACKEND=jax. "
            f"Received: backend {backend!r}"
        )
    missing = [name for name in (ENV[0], ENV[2]) if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"{ENV[1]}={count} asks for a multi-process run: set "
            f"{' and '.join(missing)} too (the coordinator's host:port, the "
            "same in every process; this process's index from 0)."
        )
    import jax

    if not jax.distributed.is_initialized():
        keras.distribution.initialize()
    return jax.process_index(), jax.process_count()


def process_index():
    """This process's index (0 without a multi-process run)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def process_count():
    """How many processes the run has (1 without a multi-process run)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def local_rows(batch):
    """This process's rows of a global batch under the active distribution.

    Every array of the structure `batch` (tuples, dicts; `None` passes) is
    cut on its first axis to the rows the distribution's data layout places
    on this process's devices: one slice in process order under data
    parallelism, the whole batch where the mesh's batch axis does not span
    processes. `batch` itself with one process.
    """
    if process_count() == 1:
        return batch
    distribution = keras.distribution.distribution()

    def rows(array):
        sharding = distribution.get_data_layout(array.shape).backend_layout
        held = [
            index[0]
            for index in sharding.addressable_devices_indices_map(array.shape).values()
        ]
        begin = min(s.start or 0 for s in held)
        return array[
            begin : max(len(array) if s.stop is None else s.stop for s in held)
        ]

    return keras.tree.map_structure(rows, batch)


def all_agree(ok):
    """Whether every process passes `ok` (a collective: every process calls
    it at the same point). `ok` itself with one process."""
    if process_count() == 1:
        return bool(ok)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([int(bool(ok))]))
    return bool(np.all(flags))


@contextlib.contextmanager
def run_folder(out_dir, resume):
    """The folder this process writes the run to: `out_dir` in process 0;
    elsewhere a private folder, removed at exit, holding a copy of `out_dir`
    to resume from (the processes must agree on every step, and a resume
    reads where the run stopped). A collective: every process enters it
    before process 0 changes `out_dir`.

    Raises:
        ValueError: in every process, when one of them cannot copy `out_dir`
            to resume from (the message names it).
    """
    index, error, scratch, folder = process_index(), None, None, out_dir
    if index > 0:
        scratch = tempfile.mkdtemp(prefix=f"keras-guide-process-{index}-")
        folder = os.path.join(scratch, os.path.basename(os.path.normpath(out_dir)))
        try:
            if resume:
                shutil.copytree(out_dir, folder, symlinks=True)
        except OSError as failure:
            error = failure
    try:
        if not all_agree(error is None):
            who = (
                f"this process ({error})"
                if error is not None
                else "another process (see its message)"
            )
            raise ValueError(
                f"--resume: {who} of the run could not read --out {out_dir}; put "
                "the run folder on a file system every host sees (each process "
                "resumes from process 0's checkpoint)."
            )
        yield folder
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
