"""Atomic writes: the one helper for files, the one for directories, and the one for a run's files in a shared folder.

A file is written to a temporary name in the same folder and renamed over the target (``os.replace``);
a directory is filled under a temporary name and swapped into place. Readers therefore see either the old
or the new content, never half of one; a failure leaves the old content and no temporary behind.

Permissions: ``tempfile`` creates files 0600 and folders 0700 whatever the umask. The result here gets the
mode a plain ``open(path, "w")`` / ``mkdir`` would have given: an existing file's mode is kept, a new
file gets ``0666 & ~umask`` and a new folder ``0777 & ~umask``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux: /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is absent)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], T]) -> Path:
    """Calls ``write(tmp)`` to write a temporary file next to ``path``, then renames it over ``path``.

    Args:
        path: the file to create or replace (its folder is created if missing).
        write: writes the whole content to the ``Path`` it is given (e.g. ``lambda t: df.to_csv(t)``).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, replaceable: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yields an empty temporary folder next to ``path``; when the block ends without an error the folder
    replaces ``path`` (an existing one is moved aside, then deleted). On an error nothing changes.

    Args:
        path: the folder to create or replace.
        replaceable: called with an existing ``path``; False refuses to replace it (ConfigError), so that a
            folder that is not ours is never deleted.

    Raises:
        ConfigError: before anything is written (so no work is spent on it), when ``path`` is a file, lies
            under a file, or is a folder ``replaceable`` refuses; the last is checked again at the end.
    """
    from tokrec.errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a folder; a model is saved as a folder")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ConfigError(f"{above} is not a folder; cannot save a model under it ({path})")
    if path.is_dir() and replaceable is not None and not replaceable(path):
        raise ConfigError(f"{path} exists and is not what this writes; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        umask = current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        yield tmp
        _follow_umask(tmp, umask)
        if path.exists():
            if replaceable is not None and not replaceable(path):
                raise ConfigError(f"{path} exists and is not what this writes; refusing to replace it")
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty temporary folder next to ``path``; when the block ends without an error, each file written
    in it moves into ``path`` (created if missing) under the same relative name, replacing its namesake, and files
    of ``path`` that the block did not write are kept. On an error nothing in ``path`` changes.

    For a folder that gathers one run's outputs among other files (an evaluation report folder): everything is
    computed and written before the first file is moved, so a run that fails leaves the last run's files
    together; :func:`atomic_dir` replaces a whole folder instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        umask = current_umask()
        yield tmp
        _follow_umask(tmp, umask)
        path.mkdir(exist_ok=True)
        for root, _, files in os.walk(tmp):
            dest = path / Path(root).relative_to(tmp)
            dest.mkdir(parents=True, exist_ok=True)
            for f in sorted(files):
                os.replace(Path(root) / f, dest / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _follow_umask(folder: Path, umask: int) -> None:
    """Gives what was written under ``folder`` the modes the umask allows: libraries that write files
    themselves (safetensors' ``save_file``, transformers' ``save_pretrained``) create them 0600 whatever
    the umask, which would leave a model folder unreadable to the service's user or group."""
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


__all__ = ["atomic_dir", "atomic_write", "current_umask", "write_text_atomic"]
