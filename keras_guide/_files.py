"""Files written whole or not at all.

`write_atomic` writes under a temporary name in the file's own folder,
flushes it to disk (`fsync`), then renames it over its final name
(`os.replace`, atomic on POSIX and Windows), so a reader sees the old file or
the new one, never a torn one. `write_folder_atomic` does the same for a
folder (an old one is moved aside, then removed once the new one is in
place). The temporary names start with `TMP_PREFIX`, which names this
package, so a cleanup can tell its own leftovers from a user's files.
"""

import os
import shutil

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


def check_folder(path, error=FileNotFoundError):
    """Refuses a `path` to write whose folder does not exist, naming both (a
    write would name its temporary file instead).

    Args:
        path: the file to write.
        error: the exception class raised. Defaults to `FileNotFoundError`.

    Returns:
        The folder, as an absolute path.

    Raises:
        error: the folder does not exist.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise error(
            f"Cannot write `{path}`: its folder `{folder}` does not exist. Create "
            "it first, or pass a path in an existing folder."
        )
    return folder


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
    folder = check_folder(path)
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
    fsync_dir(folder)


def write_text(path, text):
    """`write_atomic` of a text file: `text` as UTF-8, its line ends as given
    (the reports hold `±` and `Δ`, which the platform's default encoding may
    lack)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    write_atomic(path, write)


def write_folder_atomic(folder, write):
    """Writes the folder `folder` by `write(tmp_folder)`, then swaps it into
    place.

    The new folder is written under a temporary name beside `folder` and
    every file in it flushed to disk; an existing `folder` is then moved
    aside, the new one renamed into place and the old one removed, so
    `folder` never holds half of either (a failed rename puts the old one
    back).

    Args:
        folder: the final folder.
        write: a callable writing the complete folder (creating it) at the
            path it is given.

    Raises:
        Whatever `write` raises; the temporary folder is removed and
        `folder` is left as it was.
    """
    tmp = temporary_path(folder)
    old = tmp + "-old"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        write(tmp)
        for base, _, names in os.walk(tmp):
            for name in names:
                with open(os.path.join(base, name), "rb+") as f:
                    os.fsync(f.fileno())
        moved = os.path.exists(folder)
        if moved:
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except BaseException:
            if moved:
                os.replace(old, folder)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(os.path.dirname(os.path.abspath(folder)))
