"""The tensor types a GGUF student is written in, in one table.

Each type names who produces it: the `gguf` package (float types, `q8_0` and
`q4_0`, quantized here row by row) or llama.cpp's own quantizer
(`llama_model_quantize` of `llama-cpp-python`, run on a float32 file in a
process of its own), which writes the K-quants and the other legacy types as
llama.cpp's `llama-quantize` does without an importance matrix: a mix whose
most matrices take the named type and a few (the output head, some value and
down projections) more bits.

`block` is the row length a type's blocks need. A matrix whose rows do not
split into whole blocks gets a fallback: the `gguf` package writes it as
float16; llama.cpp takes its own (the `fallback` column: `Q4_K` → `Q5_0`,
`Q5_K` → `Q5_1`, `Q6_K` → `Q8_0`, `Q2_K`/`Q3_K` → `Q4_0`; float16 when the
rows do not split into the fallback's blocks either). Students built by
`compress` have widths in multiples of `FALLBACK_BLOCK`, so every matrix
stays quantized.

This module imports nothing heavy: the command line reads its choices here.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class GGUFType:
    """One way a GGUF file's matrices are stored.

    Attributes:
        name: the name `save_gguf(dtype=...)` and `--gguf-dtype` take.
        producer: `"gguf"` (written here with the `gguf` package) or
            `"llama.cpp"` (`llama_model_quantize`).
        file_type: llama.cpp's file type, `LLAMA_FTYPE_<file_type>` in
            `llama_cpp` and `gguf.LlamaFileType.<file_type>`.
        tensor_type: the GGML type of most matrices (`gguf.GGMLQuantizationType`).
        block: the row length that type's blocks need (1 for float types).
        bits: bits per weight of `tensor_type`, scales included.
        fallback: the GGML type llama.cpp's quantizer writes a matrix in when
            its rows do not split into whole blocks, or None (float16).
    """

    name: str
    producer: str
    file_type: str
    tensor_type: str
    block: int
    bits: float
    fallback: str | None = None

    @property
    def quantized(self):
        """Whether matrices are stored in blocks (not float32, float16 or bfloat16)."""
        return self.block > 1


_ROWS = (
    # name, producer, file type, tensor type, block, bits per weight[, fallback]
    ("float32", "gguf", "ALL_F32", "F32", 1, 32.0),
    ("float16", "gguf", "MOSTLY_F16", "F16", 1, 16.0),
    ("bfloat16", "gguf", "MOSTLY_BF16", "BF16", 1, 16.0),
    ("q8_0", "gguf", "MOSTLY_Q8_0", "Q8_0", 32, 8.5),
    ("q6_k", "llama.cpp", "MOSTLY_Q6_K", "Q6_K", 256, 6.5625, "Q8_0"),
    ("q5_k_m", "llama.cpp", "MOSTLY_Q5_K_M", "Q5_K", 256, 5.5, "Q5_1"),
    ("q5_k_s", "llama.cpp", "MOSTLY_Q5_K_S", "Q5_K", 256, 5.5, "Q5_1"),
    ("q5_1", "llama.cpp", "MOSTLY_Q5_1", "Q5_1", 32, 6.0),
    ("q5_0", "llama.cpp", "MOSTLY_Q5_0", "Q5_0", 32, 5.5),
    ("q4_k_m", "llama.cpp", "MOSTLY_Q4_K_M", "Q4_K", 256, 4.5, "Q5_0"),
    ("q4_k_s", "llama.cpp", "MOSTLY_Q4_K_S", "Q4_K", 256, 4.5, "Q5_0"),
    ("q4_1", "llama.cpp", "MOSTLY_Q4_1", "Q4_1", 32, 5.0),
    ("q4_0", "gguf", "MOSTLY_Q4_0", "Q4_0", 32, 4.5),
    ("q3_k_l", "llama.cpp", "MOSTLY_Q3_K_L", "Q3_K", 256, 3.4375, "Q4_0"),
    ("q3_k_m", "llama.cpp", "MOSTLY_Q3_K_M", "Q3_K", 256, 3.4375, "Q4_0"),
    ("q3_k_s", "llama.cpp", "MOSTLY_Q3_K_S", "Q3_K", 256, 3.4375, "Q4_0"),
    ("q2_k", "llama.cpp", "MOSTLY_Q2_K", "Q2_K", 256, 2.625, "Q4_0"),
)
TYPES = {row[0]: GGUFType(*row) for row in _ROWS}
# Every name, in the order the command line lists them.
DTYPES = tuple(TYPES)
# The names llama.cpp's quantizer produces (need `llama-cpp-python`).
LLAMA_CPP_DTYPES = tuple(n for n, t in TYPES.items() if t.producer == "llama.cpp")
# The GGML types of float matrices (a file of only these is llama.cpp's input).
FLOAT_TENSOR_TYPES = frozenset(t.tensor_type for t in TYPES.values() if not t.quantized)
_BLOCKS = {t.tensor_type: t.block for t in TYPES.values()}
# Rows in multiples of this are quantized in every type, in its own blocks or
# its fallback's (`workflows/shapes.py` keeps student widths so): 32.
FALLBACK_BLOCK = math.lcm(
    *(_BLOCKS[t.fallback or t.tensor_type] for t in TYPES.values())
)


def get(dtype, argument="dtype"):
    """The `GGUFType` named `dtype`.

    Args:
        dtype: str. A name in `DTYPES`.
        argument: str. The argument named in the error. Defaults to `"dtype"`.

    Returns:
        The `GGUFType`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if dtype not in TYPES:
        raise ValueError(
            f"{argument} must be one of {', '.join(DTYPES)}. "
            f"Received: {argument}={dtype!r}"
        )
    return TYPES[dtype]
