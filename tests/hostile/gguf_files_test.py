"""GGUF files that lie: about their memory (metadata arrays far larger once
read than on disk), about their tensors (data shared, overlapping, unaligned
or past the end), about their numbers (a rotary base or epsilon of 1e30);
and `save_gguf` asked to write over the model's own file or into a missing
folder. Each is refused with one line naming the file (or loaded within the
file's own size), before any model is built, and no input changes."""

import hashlib
import struct
import tracemalloc

import pytest

gguf = pytest.importorskip("gguf", reason="the GGUF importer needs `pip install gguf`")

from keras_guide.gguf import GGUFError  # noqa: E402
from keras_guide.gguf import load_gguf  # noqa: E402
from keras_guide.gguf import save_gguf  # noqa: E402
from keras_guide.gguf.reader import GGUFFile  # noqa: E402
from tests.harness import gguf_files as tiny  # noqa: E402

# The header: magic, version, tensor count, metadata count (u64 at byte 16).
_KV_COUNT = 16
_HEADER = 24


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_string_array(data, key, count):
    """`data` (a GGUF file) with one more metadata key first: an array of
    `count` empty strings. Its length is kept a multiple of the file's
    32-byte alignment, so every tensor still lies where it did."""
    assert (24 + len(key) + 8 * count) % 32 == 0
    entry = (
        struct.pack("<Q", len(key))
        + key.encode()
        + struct.pack("<IIQ", 9, 8, count)
        + bytes(8 * count)
    )
    (keys,) = struct.unpack_from("<Q", data, _KV_COUNT)
    return data[:_KV_COUNT] + struct.pack("<Q", keys + 1) + entry + data[_HEADER:]


def _with_offsets(path, offsets):
    """The file's bytes with each tensor's data offset replaced by
    `offsets(index, offset)`."""
    data = bytearray(path.read_bytes())
    for index, tensor in enumerate(gguf.GGUFReader(path).tensors):
        parts = tensor.field.parts
        where = tensor.field.offset + sum(int(p.nbytes) for p in parts[:5])
        (offset,) = struct.unpack_from("<Q", data, where)
        struct.pack_into("<Q", data, where, offsets(index, offset))
    return bytes(data)


def test_millions_of_empty_strings_load_within_the_file_s_size(tmp_path):
    path = tmp_path / "strings.gguf"
    count = 2_000_000
    path.write_bytes(
        _with_string_array(
            tiny.write_llama(tmp_path / "llama.gguf").read_bytes(), "junk.arr", count
        )
    )
    before = _digest(path)
    tracemalloc.start()
    try:
        f = GGUFFile(path)
        # The array is walked, not held: its items are decoded when read.
        assert f.length("junk.arr") == count
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 16 MB on disk; the gguf package's reader held 3.1 GiB for it.
    assert peak < 64 * 2**20, peak
    lm = load_gguf(path)
    assert lm.backbone.num_layers == 2
    assert _digest(path) == before


@pytest.mark.parametrize(
    "count, message",
    [
        # More items than the bytes left could hold: refused before any is read.
        (10**15, r"declares 1,000,000,000,000,000 items of at least 8 bytes"),
        (40, r"item 39 of `junk.arr` declares 1,099,511,627,776 bytes, past the end"),
    ],
)
def test_arrays_longer_than_the_file_are_refused(tmp_path, count, message):
    data = tiny.write_llama(tmp_path / "llama.gguf").read_bytes()
    entry = (
        struct.pack("<Q", 8)
        + b"junk.arr"
        + struct.pack("<IIQ", 9, 8, count)
        + bytes(8 * 39)
        + struct.pack("<Q", 2**40)
    )
    (keys,) = struct.unpack_from("<Q", data, _KV_COUNT)
    path = tmp_path / "long.gguf"
    path.write_bytes(
        data[:_KV_COUNT] + struct.pack("<Q", keys + 1) + entry + data[_HEADER:]
    )
    with pytest.raises(
        GGUFError,
        match=rf"long.gguf` is truncated or corrupted: "
        rf"(metadata array `junk.arr` )?{message}",
    ):
        load_gguf(path)


@pytest.mark.parametrize(
    "offsets, message",
    [
        # Every tensor on the first one's data: a large model from a small file.
        (lambda i, o: 0, r"offset 0 lies inside the tensor before it"),
        (lambda i, o: o + 1 if i == 3 else o, r"is not a multiple of the alignment 32"),
        (
            lambda i, o: o + 2**40 if i == 5 else o,
            r"is truncated: tensor `.*` ends at byte \d+ but the file has",
        ),
    ],
)
def test_aliased_overlapping_or_outside_tensors_are_refused(tmp_path, offsets, message):
    source = tiny.write_llama(tmp_path / "llama.gguf")
    path = tmp_path / "aliased.gguf"
    path.write_bytes(_with_offsets(source, offsets))
    before = _digest(path)
    with tiny.built_backbones() as built:
        with pytest.raises(GGUFError, match="aliased.gguf"):
            GGUFFile(path)
        with pytest.raises(GGUFError, match=message) as error:
            load_gguf(path)
    assert not built
    assert len(str(error.value).splitlines()) == 1
    assert _digest(path) == before


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "llama.rope.freq_base",
            1e30,
            r"`llama.rope.freq_base` must lie in \[1, "
            r"1e\+10\].*Received: 1\.0000\d+e\+30",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            1e30,
            r"`llama.attention.layer_norm_rms_epsilon` must lie in \[1e-12, 0.1\]",
        ),
    ],
)
def test_absurd_rotary_base_and_epsilon_are_refused_with_the_range(
    tmp_path, key, value, message
):
    path = tiny.write_llama(tmp_path / "absurd.gguf", metadata={key: value})
    with pytest.raises(GGUFError, match=message):
        load_gguf(path)


def test_bad_paths_are_named(tmp_path):
    for path in (None, 3, ["model.gguf"]):
        with pytest.raises(
            GGUFError,
            match=r"`path` must be the path of a `.gguf` "
            r"file .* Received: path=",
        ):
            load_gguf(path)


def test_save_gguf_never_replaces_the_model_s_own_file(tmp_path):
    path = tiny.write_llama(tmp_path / "llama.gguf")
    before = _digest(path)
    lm = load_gguf(path)
    with pytest.raises(
        GGUFError,
        match=r"llama.gguf` is the file this model was "
        r"loaded from",
    ):
        save_gguf(lm, path, overwrite=True)
    with pytest.raises(GGUFError, match="is the file this model was loaded from"):
        save_gguf(lm.backbone, str(path), overwrite=True, metadata_from=None)
    assert _digest(path) == before
    # Another file is written as before.
    save_gguf(lm, tmp_path / "copy.gguf")
    assert GGUFFile(tmp_path / "copy.gguf").tensor_names


def test_a_missing_output_folder_is_named_not_the_temporary_file(tmp_path):
    lm = load_gguf(tiny.write_llama(tmp_path / "llama.gguf"))
    missing = tmp_path / "absent" / "student.gguf"
    with pytest.raises(GGUFError, match=r"its folder `.*absent` does not exist") as e:
        save_gguf(lm, missing)
    assert "tmp" not in str(e.value).replace(str(tmp_path), "")
    assert not (tmp_path / "absent").exists()
