"""The tiny models of `tests/hf/` written once per test run (per backend), and
what `transformers` makes of them, for every module here."""

import os

import pytest

from tests.hf import cases
from tests.hf import reference


@pytest.fixture(scope="package")
def exported(tmp_path_factory):
    """`{case: {model, folder, teacher, ours, theirs, answer}}`: every case of
    `cases.build` written by `save_hf`; the Keras logits (`ours`) and
    `transformers`' (`theirs`) on the same ids; `transformers`' loading
    report, tokenization of `cases.HARD_TEXTS` (one case per vocabulary) and
    greedy continuation of `cases.PROMPT` (`cases.GENERATOR`) in `answer`."""
    pytest.importorskip("gguf", reason="the GGUF reader needs `pip install gguf`")
    from keras_guide.hf import save_hf

    tmp_path = tmp_path_factory.mktemp("hf")
    models = cases.build(tmp_path)
    jobs, ours = [], {}
    for name, (model, source) in models.items():
        folder = save_hf(model, tmp_path / name, metadata_from=source)
        ids = cases.ids_of(model)
        ours[name] = cases.keras_logits(model, ids)
        job = {"folder": os.fspath(folder), "ids": ids}
        if source is None and name != "llama-untied":  # one per vocabulary
            job["texts"] = cases.HARD_TEXTS
        if name in ("llama-gqa-tied", "gemma3"):
            job["messages"] = cases.MESSAGES
        if name == cases.GENERATOR:
            job.update(prompt=cases.PROMPT, steps=cases.STEPS)
        jobs.append(job)
    answers, logits = reference.transformers_answers(jobs, tmp_path)
    teachers = {
        "llama-gqa-tied": tmp_path / "bpe.gguf",
        "llama-untied": tmp_path / "untied.gguf",
        "llama-sentencepiece": tmp_path / "spm.gguf",
        "gemma3": tmp_path / "gemma.gguf",
    }
    return {
        name: dict(
            answer=answer,
            theirs=z,
            ours=ours[name],
            folder=tmp_path / name,
            model=models[name][0],
            teacher=teachers.get(name),
        )
        for name, answer, z in zip(models, answers, logits)
    }
