"""File helpers shared by every stage: hashing, atomic writes, locks."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from converter.errors import ArtifactError, DiskFullError, LockTimeoutError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hash PATH in 1 MiB chunks, so large weight files never sit in memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_sibling(path: Path) -> Path:
    """Return an unused name beside PATH that no reader mistakes for the real file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".incomplete", dir=path.parent)
    os.close(handle)
    return Path(name)


_WRITE_HINT = "Remove what is in the way, or choose a writable --artifacts-dir"


def check_writable(path: Path) -> None:
    """Raise ArtifactError when PATH is a folder or its folder cannot take new files, before any slow work."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(path, "is a folder, so the file cannot be written", hint=_WRITE_HINT)
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise ArtifactError(path, f"cannot be written because {path.parent} is not writable", hint=_WRITE_HINT)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; move it onto PATH only if the block succeeds.

    A failure to create, write or move the temporary file raises ArtifactError
    naming PATH, not the temporary name.
    """
    try:
        temporary = temporary_sibling(path)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        with disk_full_as_error(path):
            yield temporary
            # mkstemp creates the file with mode 0600; give it the mode a plain open() would.
            if temporary.exists():
                temporary.chmod(0o666 & ~_umask())
            os.replace(temporary, path)
    except OSError as error:
        if str(temporary) not in (str(error.filename), str(error.filename2)):
            raise
        raise _write_error(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)


def _write_error(path: Path, error: OSError) -> ArtifactError:
    reason = error.strerror or type(error).__name__
    return ArtifactError(path, f"cannot be written ({reason})", hint=_WRITE_HINT)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: Path, document: Any) -> None:
    """Write DOCUMENT as deterministic JSON: sorted keys, two-space indent, final newline."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: Path) -> Any | None:
    """Return the JSON document at PATH, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def copy_atomic(source: Path, destination: Path) -> None:
    """Copy SOURCE to DESTINATION as a file of its own.

    A hard link into the Hugging Face cache would share the inode, so an
    edit in one artifacts folder would change the cache and every other
    folder that links to it.
    """
    with atomic_path(destination) as temporary:
        shutil.copyfile(source, temporary)


@contextlib.contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    """Turn ENOSPC and EDQUOT while writing PATH into a DiskFullError naming it."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"{path}: no space left on the device", hint="Free disk space or choose another --artifacts-dir"
            ) from error
        raise


@contextlib.contextmanager
def model_lock(lock_path: Path, *, timeout: float = 3600.0) -> Iterator[None]:
    """Hold an exclusive lock on one model's artifacts, reporting while another process holds it."""
    lock = filelock.FileLock(str(lock_path))
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except filelock.Timeout:
        # filelock.Timeout derives from OSError, so it is caught first.
        log.warning("waiting for another omz-like process that holds the lock %s", lock_path)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise LockTimeoutError(
                f"{lock_path}: still locked by another process after {timeout:.0f} s",
                hint="Wait for the other build to finish, or remove the lock file if no build is running",
            ) from None
    except OSError as error:
        raise ArtifactError(
            lock_path, f"cannot create the lock file ({error.strerror})", hint="Choose a writable --artifacts-dir"
        ) from None
    try:
        yield
    finally:
        lock.release()
