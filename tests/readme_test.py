"""Every ```python block of the README runs as printed, on every backend.

Each block runs alone, in a fresh namespace and an empty working folder, so it
can use nothing an earlier block defined. An HTML comment on the line before a
block (blank lines between are allowed) changes how it runs:

    <!-- readme-test: skip (why it cannot run offline) -->
    <!-- readme-test: backends=jax devices=2 (why) -->

`skip` never runs it; `backends=a,b` runs it on those backends only; `devices=N`
runs it in its own process with N simulated host devices (the JAX device count
is fixed when JAX starts). Every marker gives its reason in parentheses.
"""

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_MARKER = re.compile(
    r"^<!--\s*readme-test:\s*(?P<options>[^(]*?)\s*\((?P<reason>.+)\)\s*-->$"
)
_BACKENDS = ("jax", "tensorflow", "torch")


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip: bool = False
    backends: tuple = _BACKENDS
    devices: int = 1
    reason: str = ""


def _options(text, line):
    match = _MARKER.match(text.strip())
    if not match:
        raise ValueError(
            f"README.md:{line}: a readme-test marker must read "
            "`<!-- readme-test: OPTIONS (reason) -->`, OPTIONS from `skip`, "
            f"`backends=a,b`, `devices=N`. Received: {text.strip()!r}"
        )
    options = {"reason": match["reason"]}
    for word in match["options"].split():
        key, _, value = word.partition("=")
        if word == "skip":
            options["skip"] = True
        elif key == "backends" and value and set(value.split(",")) <= set(_BACKENDS):
            options["backends"] = tuple(value.split(","))
        elif key == "devices" and value.isdigit() and int(value) >= 1:
            options["devices"] = int(value)
        else:
            raise ValueError(
                f"README.md:{line}: unknown readme-test option {word!r}; use "
                f"`skip`, `backends=` (of {', '.join(_BACKENDS)}) or `devices=N`."
            )
    return options


def _misplaced(line):
    return ValueError(
        f"README.md:{line}: a readme-test marker must precede a ```python block."
    )


def readme_blocks(text):
    """The README's ```python blocks, each with the options of its marker."""
    lines = text.splitlines()
    blocks, pending, index = [], None, 0
    while index < len(lines):
        stripped = lines[index].strip()
        if "readme-test:" in stripped:
            pending = (index + 1, _options(stripped, index + 1))
        elif stripped.startswith("```"):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if stripped == "```python":
                code = "\n".join(lines[index + 1 : end]) + "\n"
                blocks.append(Block(index + 1, code, **(pending[1] if pending else {})))
            elif pending:
                raise _misplaced(pending[0])
            pending = None
            index = end
        elif stripped and pending:
            raise _misplaced(pending[0])
        index += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_few_are_skipped():
    assert len(BLOCKS) >= 4
    assert sum(block.skip for block in BLOCKS) <= len(BLOCKS) // 4


def test_markers_are_checked():
    text = "<!-- readme-test: backends=jax devices=2 (why) -->\n\n```python\nx = 1\n```"
    (block,) = readme_blocks(text)
    assert (block.backends, block.devices, block.code) == (("jax",), 2, "x = 1\n")
    with pytest.raises(ValueError, match="unknown readme-test option 'gpu'"):
        readme_blocks("<!-- readme-test: gpu (no) -->\n```python\n```\n")
    with pytest.raises(ValueError, match=r"must read"):
        readme_blocks("<!-- readme-test: skip -->\n```python\n```\n")
    with pytest.raises(ValueError, match="must precede a ```python block"):
        readme_blocks("<!-- readme-test: skip (why) -->\ntext\n```python\n```\n")


def _source(block):
    # Padded so that a traceback names the README's own line numbers.
    return "\n" * block.line + block.code


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_printed(block, tmp_path, monkeypatch):
    backend = keras.backend.backend()
    if block.skip:
        pytest.skip(f"README.md:{block.line} is marked skip: {block.reason}")
    if backend not in block.backends:
        only = ", ".join(block.backends)
        pytest.skip(f"README.md:{block.line} runs on {only} only: {block.reason}")
    monkeypatch.chdir(tmp_path)
    if block.devices == 1:
        exec(compile(_source(block), str(README), "exec"), {"__name__": "__readme__"})
        return
    script = tmp_path / "block.py"
    script.write_text(_source(block), encoding="utf-8")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    paths = [str(ROOT), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    flag = f"--xla_force_host_platform_device_count={block.devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"README.md:{block.line} failed on {block.devices} devices:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
