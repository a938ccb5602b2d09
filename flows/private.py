"""Private files: the data folder is 0700; the database, mailbox files, secrets, checkpoints and
serve.json are 0600. A file is created with its mode at once (never widened, then narrowed):
written to a fresh temporary file opened ``O_CREAT | O_EXCL`` with mode 0600, then renamed
into place atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and set it to 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        os.chmod(path, DIR_MODE)
    except OSError:  # not ours (a shared mount): leave it
        pass
    return path


def write_private(path: Path, data: str | bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` as a 0600 file, atomically. With ``exclusive``, a file that
    appeared meanwhile (another process made the secret first) is kept, not replaced."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the file exists: first writer wins
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def make_private(path: Path) -> None:
    """Narrow an existing file to 0600 (the SQLite file, files made by other libraries)."""
    try:
        os.chmod(path, FILE_MODE)
    except (FileNotFoundError, PermissionError):  # gone, or not ours (a shared mount)
        pass
