"""`keras-guide eval`: models and a text in, the numbers llama.cpp users
compare out (`llama-perplexity`'s perplexity and `--kl-divergence` figures,
`keras_guide.evaluation.llama_perplexity`), each model where it runs, one
tokenization for all; `eval.json` and `eval.md` in `--out`.
"""

import json
import os
import time

from keras_guide import _files
from keras_guide.evaluation import llama_perplexity
from keras_guide.evaluation import runners as runners_lib
from keras_guide.workflows import inputs
from keras_guide.workflows import text as text_lib

JSON_FILE, TABLE_FILE = "eval.json", "eval.md"


def keras_runner(model, path="model"):
    """`runners.KerasRunner` over `model` with its own tokenizer."""
    return runners_lib.KerasRunner(model, path, text_lib.model_encoder(model))


def open_runner(path, context, runtime="auto", threads=None):
    """The runner for a model argument (a path or a packaged name).

    Args:
        path: str. A `.gguf` file, a `.keras` file, a preset folder, a Hugging
            Face folder, or a packaged name (`smollm2`, `gemma3`).
        context: int. The chunk length.
        runtime: str. `"auto"` (llama.cpp for a `.gguf` file, Keras for the
            rest), `"keras"` (a `.gguf` file imported by `load_gguf`) or
            `"llama.cpp"` (a `.gguf` file only). Defaults to "auto".
        threads: int or None. llama.cpp's CPU threads. Defaults to every core.

    Raises:
        ValueError: `runtime` is unknown, or llama.cpp asked for a model that
            is not a `.gguf` file.
    """
    if runtime not in runners_lib.RUNTIMES:
        raise ValueError(
            f"`runtime` must be one of {runners_lib.RUNTIMES}. "
            f"Received: runtime={runtime!r}"
        )
    resolved = os.fspath(inputs.resolve_model(path))
    is_gguf = resolved.endswith(".gguf")
    if runtime == "llama.cpp" and not is_gguf:
        raise ValueError(
            f"{path}: llama.cpp runs .gguf files only; run it in Keras "
            "(--runtime keras or auto) or export it first."
        )
    if is_gguf and runtime != "keras":
        return runners_lib.LlamaCppRunner(resolved, context, threads=threads)
    return keras_runner(inputs.load_model(resolved), path)


def read_text(paths):
    """The text of `paths` (files or folders of `.txt` files, in order) as
    `cat` would join them: the bytes as they are, nothing stripped, so
    `llama-perplexity -f` on that file sees the same text.

    Raises:
        ValueError: a path holds no text.
    """
    files = [name for path in paths for name in text_lib.text_files(path)]
    joined = "".join(text_lib.read_text(name) for name in files)
    if not joined.strip():
        raise ValueError(
            f"{', '.join(paths)}: no text to evaluate on (empty). Pass "
            "a text file of at least two chunks."
        )
    return joined, files


def evaluate(
    models,
    paths,
    contexts=(512,),
    base=None,
    max_chunks=None,
    runtime="auto",
    threads=None,
    verbose=True,
):
    """Every model on the text of `paths` at each context.

    Args:
        models: list of str. Model arguments (`.gguf`, `.keras`, preset
            folders, packaged names); the first that tokenizes defines the
            tokens (the base, if given, is first).
        paths: list of str. Text files or folders.
        contexts: ints. Chunk lengths (`llama-perplexity -c`). Defaults to
            (512,).
        base: str or None. The model the others are compared with
            (`--kl-divergence`). Defaults to None.
        max_chunks: int or None. The first chunks only (`--chunks`).
        runtime: str. `runners.RUNTIMES`. Defaults to "auto".
        threads: int or None. llama.cpp's threads.
        verbose: bool. Progress bars. Defaults to True.

    Returns:
        dict: `text` (files, characters, tokens), `models` (name → runtime),
        `base`, `results` (`{context: {name: figures}}`), `seconds`.

    Raises:
        ValueError: a context above a model's, a text shorter than two
            chunks, models with different vocabularies.
    """
    started = time.perf_counter()
    names = list(dict.fromkeys(([base] if base else []) + list(models)))
    text, files = read_text(paths)
    contexts = sorted({int(c) for c in contexts})
    keras_models = {}
    results, ids = {}, None
    for context in contexts:
        runners = {}
        try:
            for name in names:
                if name in keras_models:
                    runners[name] = keras_models[name]
                    continue
                runner = open_runner(name, context, runtime, threads)
                if runner.runtime == "keras":
                    keras_models[name] = runner
                runners[name] = runner
            llama_perplexity.check_context(runners, context)
            if ids is None:
                ids, bos = llama_perplexity.shared_tokens(runners, text)
            if verbose:
                print(
                    f"Context {context}: {len(ids) // context} chunks of the "
                    f"text's {len(ids):,} tokens"
                )
            results[str(context)] = llama_perplexity.measure(
                runners,
                ids,
                context,
                bos,
                base=base,
                max_chunks=max_chunks,
                verbose=verbose,
            )
        finally:
            for runner in runners.values():
                if runner.runtime != "keras":
                    runner.close()
    return {
        "text": {"files": files, "characters": len(text), "tokens": int(len(ids))},
        "models": {
            name: ("keras" if name in keras_models else "llama.cpp") for name in names
        },
        "base": base,
        "results": results,
        "seconds": time.perf_counter() - started,
    }


def evaluate_tasks(
    models,
    tasks,
    include_path=None,
    num_fewshot=None,
    limit=None,
    batch_size=8,
    verbose=True,
):
    """Every model on lm-evaluation-harness tasks, in Keras
    (`keras_guide.evaluation.harness`; `pip install "keras-guide[eval]"`).

    Returns:
        dict `{model: {task: {metric: value}}}`.
    """
    from keras_guide.evaluation import harness

    return {
        name: harness.evaluate_tasks(
            inputs.load_model(name),
            tasks,
            include_path=include_path,
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            progress=verbose,
        )
        for name in models
    }


def _task_lines(scores):
    lines = [
        "",
        "### lm-evaluation-harness",
        "",
        "| model | task | metric | value |",
        "|---|---|---|---|",
    ]
    for name, tasks in scores.items():
        for task, metrics in tasks.items():
            for metric, value in metrics.items():
                if metric.endswith("_stderr") or "_stderr," in metric:
                    continue
                error = metrics.get(
                    metric.replace(",", "_stderr,", 1)
                    if "," in metric
                    else metric + "_stderr"
                )
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                if isinstance(error, float):
                    shown += f" ± {error:.4f}"
                lines.append(f"| {name} | {task} | {metric} | {shown} |")
    return lines


def render(report):
    """The report as Markdown: one table per context, and the tasks'."""
    lines = []
    if report.get("text"):
        files = ", ".join(os.path.basename(f) for f in report["text"]["files"])
        lines.append(
            f"Text: {files} ({report['text']['tokens']:,} tokens). "
            "llama-perplexity's protocol: chunks of the context, the "
            "second half of each scored."
        )
    for context, figures in report.get("results", {}).items():
        rows = next(iter(figures.values()))
        lines += [
            "",
            f"### Context {context} ({rows['chunks']} chunks, "
            f"{rows['tokens']:,} scored tokens)",
            "",
        ]
        header = "| model | runtime | PPL | ln PPL (nats/token) |"
        rule = "|---|---|---|---|"
        if report["base"]:
            header += (
                f" ln(PPL/PPL base) | mean KL from {report['base']} | "
                "99 % KL | median KL | same top p | Δp RMS |"
            )
            rule += "---|---|---|---|---|---|"
        lines += [header, rule]
        for name, f in figures.items():
            row = (
                f"| {name} | {report['models'][name]} | {f['perplexity']:.3f} ± "
                f"{f['perplexity_error']:.3f} | {f['nll']:.4f} |"
            )
            if report["base"]:
                k = f.get("vs_base")
                row += (
                    " (base) | | | | | |"
                    if k is None
                    else f" {k['ln_ppl_ratio']:.4f} ± {k['ln_ppl_ratio_error']:.4f} | "
                    f"{k['kl']:.4f} ± {k['kl_error']:.4f} | "
                    f"{k['kl_percentiles']['99.0']:.4f} | "
                    f"{k['kl_percentiles']['50.0']:.4f} | "
                    f"{k['same_top']:.2%} | {k['delta_p_rms']:.2%} |"
                )
            lines.append(row)
    if report.get("tasks"):
        lines += _task_lines(report["tasks"])
    return "\n".join(lines) + "\n"


def write(report, out):
    """`eval.json` and `eval.md` in the folder `out` (created if missing)."""
    os.makedirs(out, exist_ok=True)
    _files.write_text(os.path.join(out, JSON_FILE), json.dumps(report, indent=1))
    _files.write_text(os.path.join(out, TABLE_FILE), render(report))


def teacher_and_students(
    teacher, students, text, contexts=(512, 2048), max_tokens=8192, verbose=True
):
    """A teacher and its students with `llama-perplexity`'s protocol on
    `text`, each student against the teacher as base, at each context the
    text and every model allow: what `compress`'s report gives.

    Args:
        teacher: a `.gguf` path (run by llama.cpp, a session of each
            context's size, as `llama-perplexity -c` runs it) or a Keras
            model (run in Keras).
        students: dict `{name: model}`, each as `teacher` (e.g. the student
            written at several GGUF types).
        text: str. The held-out text.
        contexts: ints. Chunk lengths. Defaults to (512, 2048).
        max_tokens: int. Chunks up to this many tokens at each context
            (at least two). Defaults to 8192.
        verbose: bool. Progress bars. Defaults to True.

    Returns:
        dict `{context: {"teacher": figures, name: figures, ...}}`, or
        `{context: {"skipped": why}}` where the text or a model's context
        length does not allow two chunks.
    """
    models = {"teacher": teacher, **students}
    in_keras = {
        name: keras_runner(model, name)
        for name, model in models.items()
        if not isinstance(model, (str, os.PathLike))
    }
    out, ids = {}, None
    for context in contexts:
        runners = {}
        try:
            # One at a time inside the try: a file llama.cpp cannot open
            # still closes the sessions opened before it.
            for name, model in models.items():
                runners[name] = in_keras.get(name) or runners_lib.LlamaCppRunner(
                    model, context
                )
            if ids is None:
                ids, bos = llama_perplexity.shared_tokens(runners, text)
            limit = min(
                [r.context_length for r in runners.values() if r.context_length]
                or [context]
            )
            if context > limit:
                out[str(context)] = {
                    "skipped": f"above the models' context length ({limit})"
                }
            elif len(ids) < 2 * context:
                out[str(context)] = {
                    "skipped": f"the held-out text has "
                    f"{len(ids)} tokens, fewer than "
                    "two chunks"
                }
            else:
                if verbose:
                    print(f"llama-perplexity's protocol at a context of {context}")
                out[str(context)] = llama_perplexity.measure(
                    runners,
                    ids,
                    context,
                    bos,
                    base="teacher",
                    max_chunks=max(2, max_tokens // context),
                    verbose=verbose,
                )
        finally:
            for name, runner in runners.items():
                if name not in in_keras:
                    runner.close()
    return out
