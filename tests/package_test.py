import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_is_light():
    code = (
        "import sys, keras_guide; print(sorted(m for m in "
        "('keras_hub', 'tensorflow', 'torch') if m in sys.modules))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# A backslash at the end of a line below joins it with the next one: the code
# that runs has those lines as one line.
_DIGEST = """
import hashlib, keras, numpy as np
from keras_guide.initializers import GuidedInitializer, pca_projection
rng = np.random.default_rng(7)
table = rng.normal(size=(300, 48)).astype("float32")
kernel = rng.normal(size=(48, 4, 12)).astype("float32")
p = pca_projection(table, 20, mean_preserving=True)
values = [
    GuidedInitializer(table, {1: p})((300, 20), "float32"),
    GuidedInitializer(kernel, {0: p}, {1: "uniform"}, gains={0: rng.normal(size=48)}, \
scale=1.5)((20, 2, 12), "float32"),
]
print(hashlib.sha256(b"".join(keras.ops.convert_to_numpy(v).tobytes() \
for v in values)).hexdigest())
"""


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns all three backends itself; running it once (under jax) suffices",
)
def test_student_weights_bit_identical_on_all_backends():
    digests = {}
    for backend in ("jax", "tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend)
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        digests[backend] = out.stdout.strip().splitlines()[-1]
    assert len(set(digests.values())) == 1, digests


def _module_name(path):
    relative = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    if relative[-1] == "__init__":
        relative = relative[:-1]
    return ".".join(relative)


def _import_graph():
    """`{module: {imported keras_guide modules}}` over every `keras_guide`
    file, counting imports inside functions too."""
    import ast

    files = {}
    for folder, _, names in os.walk(os.path.join(ROOT, "keras_guide")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                files[_module_name(path)] = path
    graph = {}
    for module, path in files.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        targets = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


_UPPER = (
    "keras_guide.workflows",
    "keras_guide.demo",
    "keras_guide.commands",
    "keras_guide.cli",
    "keras_guide.__main__",
)


def _within(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    assert "keras_guide.workflows.distill" in graph and "keras_guide.guide" in graph
    assert _cycles(graph) == []


def test_the_core_imports_nothing_above_it():
    graph = _import_graph()
    core = [m for m in graph if m != "keras_guide" and not _within(m, _UPPER)]
    assert "keras_guide.distillation.distiller" in core
    upward = {m: sorted(t for t in graph[m] if _within(t, _UPPER)) for m in core}
    assert {m: t for m, t in upward.items() if t} == {}
    # The root package is the public API: it imports only the core.
    assert not [t for t in graph["keras_guide"] if _within(t, _UPPER)]
    # Workflows take loaded models and text: the CLI and the demo sit above them.
    above = (
        "keras_guide.demo",
        "keras_guide.commands",
        "keras_guide.cli",
        "keras_guide.__main__",
    )
    workflows = [m for m in graph if _within(m, ("keras_guide.workflows",))]
    assert {
        m: sorted(graph[m])
        for m in workflows
        if any(_within(t, above) for t in graph[m])
    } == {}


def test_every_module_has_a_listed_test_home():
    """tests/README.md names the test files of every module, and they exist."""
    import glob
    import re

    with open(os.path.join(ROOT, "tests", "README.md")) as f:
        rows = re.findall(r"^\| `([^`]+\.py)` \| (.+) \|$", f.read(), re.M)
    listed = {module: re.findall(r"`([^`]+)`", tests) for module, tests in rows}
    package = os.path.join(ROOT, "keras_guide")
    modules = {
        os.path.relpath(p, package)
        for p in glob.glob(os.path.join(package, "**", "*.py"), recursive=True)
    } - {"__main__.py"}
    assert sorted(modules - set(listed)) == []  # modules without a test home
    assert sorted(set(listed) - modules) == []  # rows for modules that are gone
    missing = sorted(
        t
        for tests in listed.values()
        for t in tests
        if not os.path.exists(os.path.join(ROOT, "tests", t))
    )
    assert missing == []
