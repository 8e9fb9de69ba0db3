"""The embedded default's data dir (SQLite database, generated data key): private to the
service's user. The directory is created 0700 and the files in it 0600; a directory that
already exists is the operator's and is left as it is, with a warning when others may read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600

_warned: set[Path] = set()


def ensure_data_dir(path: Path) -> None:
    """Create `path` 0700 (its missing parents with the default mode), or check the one there."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        _warn_if_open(path)
        return
    os.chmod(path, DIR_MODE)  # the umask may have taken the owner's bits too


def _warn_if_open(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.resolve() not in _warned:
        _warned.add(path.resolve())  # once per process, not once per caller
        logger.warning(
            "data dir %s has mode %04o: group or others can reach the database and keys "
            "it holds; make it private (chmod 700)",
            path,
            mode,
        )


def create_private_file(path: Path) -> None:
    """Create an empty `path` 0600 unless it exists. For the SQLite database: SQLite creates
    its -wal and -shm files with the database file's permissions, so they are 0600 too. (An
    empty file is an empty SQLite database.)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except (FileExistsError, FileNotFoundError):
        return  # there already, or no such directory: SQLite reports that itself
    try:
        os.fchmod(fd, FILE_MODE)  # exactly, whatever the umask
    finally:
        os.close(fd)
