"""The devices a training command spreads over: `compress --devices N
--model-parallel M` checked against the devices the backend sees, and the
`keras.distribution` of `compress` and of `distill --data-parallel |
--model-parallel N`, a model-parallel one planned on the models loaded once
outside it (the run loads them again inside it, where their variables take
their shards)."""

import contextlib

from keras_guide.commands._options import UsageError
from keras_guide.workflows import inputs


def _check_mesh(args):
    """`--model-parallel` divides `--devices`, and the device groups divide
    `--batch-size`."""
    if args.devices % args.model_parallel:
        raise UsageError(
            f"--model-parallel {args.model_parallel} must divide --devices "
            f"{args.devices}: the devices form a (devices/M, M) mesh. Received: "
            f"--devices {args.devices}, --model-parallel {args.model_parallel}"
        )
    groups = args.devices // args.model_parallel
    if args.batch_size % groups:
        over = (
            f"--devices {args.devices}"
            if groups == args.devices
            else f"{groups} (--devices {args.devices} / --model-parallel "
            f"{args.model_parallel})"
        )
        raise UsageError(
            f"--batch-size must be a multiple of {over}: each step splits its "
            "batch evenly over the device groups. Received: "
            f"--batch-size {args.batch_size}"
        )


def compress_devices(args):
    """The first `--devices` of `keras.distribution.list_devices()`, or `None`
    for one device (no distribution). Checked before `--out` is touched.

    Raises:
        UsageError: several devices on a backend other than JAX, a
            `--batch-size` they do not divide, or more devices than exist.
    """
    from keras_guide.distribution import processes

    try:
        _, count = processes.initialize()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.devices == 1 and count == 1 and args.model_parallel == 1:
        return None
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise UsageError(
            f"--devices {args.devices}: compress splits its batches with "
            "keras.distribution, which runs on the JAX backend here; run with "
            "KERAS_BACKEND=jax (or --backend jax), or drop --devices. Received: "
            f"backend {backend!r}"
        )
    _check_mesh(args)
    devices = keras.distribution.list_devices()
    if args.devices > len(devices):
        raise UsageError(
            f"--devices {args.devices}: JAX sees {len(devices)} device(s) here "
            f"({', '.join(devices[:4])}{', ...' if len(devices) > 4 else ''}); "
            "pass at most that many, or simulate N devices on CPU with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before the "
            f"command. Received: --devices {args.devices}"
        )
    if count > 1 and args.devices != len(devices):
        raise UsageError(
            f"A run of {count} processes spans every device they hold: pass "
            f"--devices {len(devices)} (the {len(devices)} devices of all "
            f"processes) in every process. Received: --devices {args.devices}"
        )
    return devices[: args.devices]


def compress_distribution(args, devices):
    """`DataParallel` over `devices`, or with `--model-parallel M` a
    `ModelParallel` whose layout map is planned on the teacher loaded once on
    the host CPU.

    Raises:
        UsageError: a teacher whose weights the mesh does not divide.
    """
    import keras

    from keras_guide.distribution import make_distribution

    if args.model_parallel == 1:
        return make_distribution("data", devices=devices)
    with keras.device("cpu:0"):
        plan = inputs.load_model(args.teacher)
    try:
        return make_distribution(
            "model", plan, plan, devices=devices, model_parallel=args.model_parallel
        )
    except ValueError as error:
        raise UsageError(f"--model-parallel {args.model_parallel}: {error}") from None


def distill_scope(args):
    """`--data-parallel` replicates the models and splits batches;
    `--model-parallel N` also shards weights over `N` devices with one layout
    map for teacher and student.

    Raises:
        NotImplementedError: on PyTorch (no `keras.distribution`), or model
            parallelism on TensorFlow.
    """
    if not args.data_parallel and not args.model_parallel:
        return contextlib.nullcontext()
    from keras_guide.distribution import make_distribution

    if args.model_parallel:
        plan = (inputs.load_model(args.teacher), inputs.load_model(args.student))
        return make_distribution(
            "model", *plan, model_parallel=args.model_parallel
        ).scope()
    return make_distribution("data").scope()
