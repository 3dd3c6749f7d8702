"""lm-evaluation-harness on Keras causal LMs: `KerasLM` and `evaluate_tasks`.

`evaluate_tasks` scores a Keras causal LM (a `keras_guide.load_gguf` model, a
`.keras` student of `keras-guide compress`, a preset) on lm-eval tasks with
`lm_eval.simple_evaluate`, through `KerasLM` (`keras_guide.evaluation.keras_lm`,
importable from here), the `lm_eval` model that follows lm-eval's `HFLM`
wherever a score depends on it. This module is the task side of the run:

- the Hugging Face Hub is kept offline for the call (`HF_HUB_OFFLINE`,
  `HF_DATASETS_OFFLINE`), so a data set that is not on this machine fails at
  once rather than after network retries;
- tasks are built before scoring: local task folders (`include_path`) are
  indexed alone where they name every task, lm-eval's own index otherwise;
  an unknown task or a data set that cannot load is one line naming it and
  how to add a task whose data are a local file;
- lm-eval's results come back as `{task: {metric: value}}`, the default
  filter's metrics under their own names (`acc`, `acc_stderr`).

lm-eval is an optional extra: `pip install 'keras-guide[eval]'`.
"""

import difflib
import os
import re

from keras_guide.evaluation.keras_lm import DEFAULT_MAX_LENGTH
from keras_guide.evaluation.keras_lm import KerasLM
from keras_guide.evaluation.keras_lm import padded_length

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "KerasLM",
    "UnknownTaskError",
    "evaluate_tasks",
    "padded_length",
]


def _offline_flags(offline):
    """Sets the Hugging Face Hub's offline switches (environment and the
    already imported modules' copies); returns the previous values."""
    import datasets.config
    import huggingface_hub.constants

    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {
        "env": {name: os.environ.get(name) for name in names},
        "hub": huggingface_hub.constants.HF_HUB_OFFLINE,
        "datasets": (
            datasets.config.HF_HUB_OFFLINE,
            datasets.config.HF_DATASETS_OFFLINE,
        ),
    }
    if offline:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    return saved


def _restore_flags(saved):
    import datasets.config
    import huggingface_hub.constants

    for key, value in saved["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    huggingface_hub.constants.HF_HUB_OFFLINE = saved["hub"]
    datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved[
        "datasets"
    ]


_LOCAL_TASK = (
    "write a task YAML (`task: NAME`, `dataset_path: json`, `dataset_kwargs: "
    "{data_files: {test: /path/data.jsonl}}`, `test_split: test`, `output_type`, "
    "`doc_to_text`, `doc_to_target`, ...) into a folder and pass that folder as "
    "include_path (keras-guide eval --task-path)"
)


class UnknownTaskError(ValueError):
    """A task, group or tag name lm-eval's index does not hold."""


def _unknown_task(name, manager, inside=None):
    close = difflib.get_close_matches(name, manager.all_tasks, n=3)
    hint = f" (close: {', '.join(close)})" if close else ""
    where = f" (named by {inside!r})" if inside else ""
    return UnknownTaskError(
        f"lm-eval knows no task {name!r}{where}{hint}. To add one, {_LOCAL_TASK}. "
        f"Received: tasks=[..., {inside or name!r}, ...]"
    )


def _missing_data(name, entry, error):
    config = (getattr(entry, "cfg", None) or {}) if entry is not None else {}
    dataset = config.get("dataset_path")
    if dataset:
        subset = config.get("dataset_name")
        files = (config.get("dataset_kwargs") or {}).get("data_files")
        dataset = (
            repr(dataset)
            + (f" ({subset})" if subset else "")
            + (f" with data_files={files!r}" if files else "")
        )
    else:
        dataset = "its data set"
    reason = (str(error).strip().splitlines() or [""])[0]
    return ValueError(
        f"Task {name!r} needs {dataset}, which this machine cannot load "
        f"({type(error).__name__}: {reason}). lm-eval reads data sets from the "
        "Hugging Face Hub or its local cache (offline here: HF_DATASETS_OFFLINE=1); "
        f"to use a local file instead, {_LOCAL_TASK}."
    )


def _load_tasks(manager, tasks):
    """Builds each named task (reading its data) and returns what to pass to
    `simple_evaluate`: a group as its `Group`, a task or tag as its tasks."""
    built = []
    for name in tasks:
        entry = manager.task_index.get(name)
        if entry is None and not (
            str(name).endswith((".yaml", ".yml")) and os.path.isfile(name)
        ):
            raise _unknown_task(name, manager)
        try:
            loaded = manager.load([name])
        except KeyError as error:
            # A group or include naming a task the index lacks.
            missing = re.search(r"'([^']+)'", str(error))
            raise _unknown_task(
                missing.group(1) if missing else name,
                manager,
                inside=name if missing else None,
            ) from error
        except (OSError, ValueError) as error:
            # datasets raises ConnectionError (an OSError) for an unreachable
            # Hub, FileNotFoundError for a missing file and DatasetNotFoundError
            # (a ValueError in some releases) for an unknown one.
            raise _missing_data(name, entry, error) from error
        groups = loaded.get("groups") or {}
        if name in groups:
            built.append(groups[name])
        else:
            built.extend(loaded["tasks"].values())
    return built


def _metrics(results):
    """`{task: {metric: value}}` from lm-eval's `results["results"]`: the
    default filter's metrics under their own names (`acc`, `acc_stderr`),
    others as `metric,filter`."""
    table = {}
    for task, values in results["results"].items():
        row = {}
        for key, value in values.items():
            if "," not in key or isinstance(value, str) or value is None:
                continue
            metric, _, kind = key.partition(",")
            row[metric if kind == "none" else key] = float(value)
        table[task] = row
    return table


def evaluate_tasks(
    model,
    tasks,
    *,
    include_path=None,
    num_fewshot=None,
    limit=None,
    batch_size=8,
    max_length=None,
    offline=True,
    bootstrap_iters=100000,
    progress=True,
):
    """Scores `model` on lm-eval tasks with `lm_eval.simple_evaluate`.

    Args:
        model: a Keras causal LM with a tokenizer (`KerasLM`'s `model`), or a
            `KerasLM` (whose own batch size, context and progress bars then
            apply, and whose compiled batch shapes are reused).
        tasks: list of str, lm-eval task, group or tag names (`hellaswag`,
            `arc_easy`, a task of `include_path`) or task YAML files.
        include_path: str or list of str, folders of local task YAML files.
            Defaults to None (lm-eval's own tasks only).
        num_fewshot: int, few-shot examples per prompt. Defaults to each
            task's own setting (0 when it has none).
        limit: int or float, examples per task (a fraction below 1). Defaults
            to None (all).
        batch_size: int, requests per forward pass. Defaults to 8.
        max_length: int, the model's context (`KerasLM`). Defaults to the
            backbone's `max_sequence_length`, else 2048.
        offline: bool, keep the Hugging Face Hub off (set HF_HUB_OFFLINE and
            HF_DATASETS_OFFLINE for the call) so a data set that is not on
            this machine fails at once rather than after network retries.
            Defaults to True.
        bootstrap_iters: int, lm-eval's bootstrap draws for the standard
            errors that need them; 0 computes no standard error. Defaults to
            100000 (lm-eval's).
        progress: bool, progress bars. Defaults to True.

    Returns:
        dict `{task: {metric: value}}` for every task and group, e.g.
        `{"arc_easy": {"acc": 0.41, "acc_stderr": 0.01, "acc_norm": 0.39,
        "acc_norm_stderr": 0.01}}`; a metric under a filter other than the
        default is keyed `metric,filter` (`exact_match,strict-match`).

    Raises:
        ValueError: an unknown task (naming it and how to add one from a
            local YAML file) or one whose data this machine cannot load
            (naming the task and its data set).
        ImportError: lm-eval is not installed (at import of this module).
    """
    if isinstance(tasks, str):
        tasks = [tasks]
    if not tasks:
        raise ValueError(f"`tasks` must name at least one task. Received: {tasks!r}")
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = (
        model
        if isinstance(model, KerasLM)
        else KerasLM(
            model, batch_size=batch_size, max_length=max_length, progress=progress
        )
    )
    saved = _offline_flags(offline)
    try:
        manager = None
        if include_path:
            # Indexing lm-eval's own tasks takes seconds; local tasks need none.
            manager = TaskManager(include_path=include_path, include_defaults=False)
            if not all(name in manager.task_index for name in tasks):
                manager = None
        if manager is not None:
            try:
                loaded = _load_tasks(manager, list(tasks))
            except UnknownTaskError:
                manager = None  # e.g. a local group of built-in tasks
        if manager is None:
            manager = TaskManager(include_path=include_path)
            loaded = _load_tasks(manager, list(tasks))
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=loaded,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            bootstrap_iters=bootstrap_iters,
            log_samples=False,
            torch_random_seed=None,
        )
    finally:
        _restore_flags(saved)
    return _metrics(results)
