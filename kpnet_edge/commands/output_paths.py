"""Output paths checked before any work: a command that would fail to write its result after
minutes of work, or write over something that is not its own, stops first with one clear line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kpnet_edge.errors import KpnetError


def check_output_file(path: Path, flag: str) -> None:
    """Raise KpnetError unless `path` can be written as a regular file (atomically: a temporary
    file in its folder, then a rename over it): not a folder, not a device, pipe or socket, and
    its folder exists or can be created, and is writable."""
    if path.is_dir():
        raise KpnetError(f"{flag} {path}: is a folder; give a file path, e.g. {path / 'results.json'}")
    if path.exists() and not path.is_file():
        raise KpnetError(f"{flag} {path}: not a regular file (a device, pipe or socket); give a file path")
    _check_writable_folder(path.parent, flag, path)


def check_output_folder(path: Path, flag: str) -> None:
    """Raise KpnetError unless `path` is, or can be created as, a writable folder."""
    if path.exists() and not path.is_dir():
        raise KpnetError(f"{flag} {path}: is a file; give a folder (it is created if missing)")
    _check_writable_folder(path, flag, path)


def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    """The nearest existing ancestor of `folder` must be a folder where we can create a file."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise KpnetError(f"{flag} {target}: {existing} is a file, so no folder can be made inside it")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".kpnet-write-check-")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise KpnetError(f"{flag} {target}: cannot write in {existing} ({reason})") from None
    os.close(handle)
    os.unlink(probe)
