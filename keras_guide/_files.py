"""Files written whole or not at all.

`write_atomic` writes under a temporary name in the file's own folder,
flushes it to disk (`fsync`), then renames it over its final name
(`os.replace`, atomic on POSIX and Windows), so a reader sees the old file or
the new one, never a torn one. The temporary names start with `TMP_PREFIX`,
which names this package, so a cleanup can tell its own leftovers from a
user's files.
"""

import os

TMP_PREFIX = ".keras-guide-tmp-"


def fsync_dir(directory):
    """Flushes a folder's entries (a rename in it) to disk; POSIX only."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path):
    """The temporary name `write_atomic` uses for `path` (same folder; it
    ends like `path`, since Keras and NumPy choose a format by extension)."""
    directory = os.path.dirname(os.path.abspath(path))
    return os.path.join(
        directory, f"{TMP_PREFIX}{os.getpid()}-{os.path.basename(path)}"
    )


def is_temporary(name):
    """Whether a file name is one of `write_atomic`'s temporary names."""
    return os.path.basename(name).startswith(TMP_PREFIX)


def write_atomic(path, write, before_rename=None):
    """Writes the file `path` by `write(tmp_path)`, then renames it into place.

    Args:
        path: the final file.
        write: a callable writing the complete file at the path it is given.
        before_rename: called (without arguments) once the temporary file is
            on disk, just before the rename (a test hook).

    Raises:
        FileNotFoundError: `path`'s folder does not exist (nothing written).
        Whatever `write` raises; the temporary file is removed and `path` is
        left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        # Named here: the write itself would name the temporary file.
        raise FileNotFoundError(
            f"Cannot write {path}: its folder {folder} does not exist. Create it "
            "first, or pass a path in an existing folder.")
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
