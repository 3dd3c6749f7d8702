"""llama.cpp's own quantizer on a float GGUF file: K-quants and the other
types the `gguf` package cannot write (`dtypes.LLAMA_CPP_DTYPES`).

`quantize_gguf` runs `llama_model_quantize` (`llama-cpp-python`) in a child
process, never in the caller's (beside PyTorch the two OpenMP runtimes can
crash it), with llama.cpp's defaults and no importance matrix: the mix of
tensor types `llama-quantize` writes for that type, including its fallback
for rows that do not split into whole 256-wide blocks.
"""

import os

from keras_guide import _files
from keras_guide.gguf import dtypes as dtypes_lib

_QUANTIZE = r"""
import ctypes, sys
import llama_cpp
source, target, file_type, threads = sys.argv[1:5]
value = getattr(llama_cpp, "LLAMA_FTYPE_" + file_type, None)
if value is None:
    sys.exit("this llama-cpp-python (%s) has no LLAMA_FTYPE_%s; upgrade it: "
             "pip install -U llama-cpp-python" % (llama_cpp.__version__, file_type))
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = value
params.nthread = int(threads)
if llama_cpp.llama_model_quantize(source.encode(), target.encode(),
                                  ctypes.byref(params)):
    sys.exit("llama_model_quantize failed on %s (see llama.cpp's log above)" % source)
"""


def check_available(dtype):
    """Refuses a llama.cpp type where `llama-cpp-python` is not installed.

    Raises:
        ImportError: the type needs llama.cpp and it is not installed (the
            message gives the `pip install` line).
    """
    from keras_guide.gguf import runtime

    if dtypes_lib.get(dtype).producer == "llama.cpp" and not runtime.available():
        others = [n for n in dtypes_lib.DTYPES if n not in dtypes_lib.LLAMA_CPP_DTYPES]
        raise ImportError(
            f"dtype={dtype!r} is written by llama.cpp's quantizer: pip install "
            f"llama-cpp-python (or pick one of {', '.join(others)})."
        )


def quantize_gguf(source, path, dtype, overwrite=False, threads=None):
    """Writes `source` (a float GGUF file) quantized by llama.cpp as `path`.

    llama.cpp picks each tensor's type as `llama-quantize` does for `dtype`
    without an importance matrix: norm gains stay float32; most matrices
    take the type's own (`dtypes.TYPES[dtype].tensor_type`), a few more bits
    (`*_m` types: half the value and down projections one step up; the
    output head or tied embedding `Q6_K`); a matrix whose rows are not a
    multiple of 256 falls back to a 32-wide type (`Q4_K` → `Q5_0`, `Q5_K` →
    `Q5_1`, `Q6_K` → `Q8_0`, `Q2_K`/`Q3_K` → `Q4_0`), and to float16 where
    the rows are not a multiple of 32 either.

    The file is written under a temporary name in `path`'s folder and
    renamed into place when complete.

    Args:
        source: str or path. A GGUF file of float32, float16 or bfloat16
            matrices (llama.cpp does not quantize quantized tensors again).
        path: str or path. The `.gguf` file to write.
        dtype: str. A type llama.cpp's quantizer writes (`dtypes.DTYPES`
            except `"float32"`).
        overwrite: bool. Replace an existing `path`. Defaults to False.
        threads: int or None. Threads llama.cpp quantizes with. Defaults to
            None (every core).

    Returns:
        `path`.

    Raises:
        ValueError: an unknown `dtype`, or `"float32"`.
        ImportError: `llama-cpp-python` is not installed.
        GGUFError: `source` is missing or not a float file, `path` is
            `source` or exists without `overwrite`.
        RuntimeError: llama.cpp failed (its last message).
    """
    from keras_guide.gguf import runtime
    from keras_guide.gguf.reader import GGUFError
    from keras_guide.gguf.reader import GGUFFile

    kind = dtypes_lib.get(dtype)
    if kind.name == "float32":
        raise ValueError(
            "quantize_gguf writes quantized or 16-bit files; copy the file for "
            "float32. Received: dtype='float32'"
        )
    if not runtime.available():
        raise ImportError(
            "quantize_gguf runs llama.cpp's quantizer: pip install llama-cpp-python"
        )
    source, path = os.fspath(source), os.fspath(path)
    if not path.endswith(".gguf"):
        raise GGUFError(f"A GGUF file's name ends in `.gguf`. Received: {path!r}")
    if os.path.exists(path) and os.path.realpath(path) == os.path.realpath(source):
        raise GGUFError(f"`{path}` is `source` itself; write the result elsewhere.")
    if os.path.exists(path) and not overwrite:
        raise GGUFError(f"`{path}` exists; pass overwrite=True to replace it.")
    f = GGUFFile(source)
    found = {f.tensor_type(name) for name in f.tensor_names}
    quantized = sorted(found - dtypes_lib.FLOAT_TENSOR_TYPES)
    if quantized:
        raise GGUFError(
            f"`{source}` holds {', '.join(quantized)} tensors; llama.cpp quantizes "
            "float files only. Write the model with dtype='float32' first."
        )
    argv = [source, None, kind.file_type, str(int(threads or os.cpu_count() or 1))]

    def write(tmp):
        argv[1] = tmp
        runtime._run_child(source, _QUANTIZE, argv)

    _files.write_atomic(path, write)
    return path


def write_quantized(path, dtype, write_float, threads=None):
    """Writes `path` in a llama.cpp type from a float32 file `write_float`
    writes: that file lives under a temporary name beside `path` while
    llama.cpp quantizes it, and is removed whatever happens.

    Args:
        path: str. The `.gguf` file to write (replaced if it exists: the
            caller has checked).
        dtype: str. A type in `dtypes.LLAMA_CPP_DTYPES`.
        write_float: callable. Writes the float32 GGUF file at the path it
            is given.
        threads: int or None. Threads llama.cpp quantizes with. Defaults to
            None (every core).

    Returns:
        `path`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    source = _files.temporary_path(os.path.join(folder, "float32-" + name))
    try:
        write_float(source)
        quantize_gguf(source, path, dtype, overwrite=True, threads=threads)
    finally:
        if os.path.exists(source):
            os.remove(source)
    return path
