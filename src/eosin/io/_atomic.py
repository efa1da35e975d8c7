"""Atomic file writes: write beside the target, flush, then rename over it.

A crash (or a kill) leaves either the previous file or the new one, never a half-written file. The temporary
file lives in the target's folder so the final :func:`os.replace` never crosses file systems. Its name,
``.<name>.<host>-<pid>-<random><suffix>``, says which process wrote it: the next write of the same target
removes temporary files whose process (on this host) no longer runs, so a ``kill -9`` leaves no debris for long.

The file gets the permissions of any file the user creates (``0o666`` less the umask: ``0o644`` under umask 022,
``0o640`` under 027), not the owner-only ``0o600`` of :func:`tempfile.mkstemp`, so reports and stores can be read by
the people and web servers the user's umask allows.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "sweep_temporaries",
]

#: a short tag of this machine, so a folder shared between machines never has a live writer's file removed
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def sweep_temporaries(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files that dead processes of this host left beside ``path``; returns how many."""
    from eosin._mp import pid_alive

    target = Path(path)
    prefix = f".{target.name}.{_HOST}-"
    pid_of = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed = 0
    for p in target.parent.glob(glob.escape(prefix) + "*"):
        match = pid_of.match(p.name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status`` on Linux; elsewhere set and restored
    at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is renamed to ``path``, else removed.

    For writers that want a file name (``cv2.imwrite``, ``PIL.Image.save``). ``suffix`` defaults to the
    target's own, so writers that choose a format by extension keep working.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{_HOST}-{os.getpid()}-",
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    mode = 0o666 & ~current_umask()
    os.chmod(tmp, mode)  # mkstemp makes 0600: honour the umask like any new file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # again: a writer may have put a file of its own in the path's place (safetensors does, owner-only)
        os.chmod(tmp_path, mode)
        _fsync_file(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` for writing that replaces ``path`` only when the block finishes without an exception."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes only; mode {mode!r} does not")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as handle:
        os.fsync(handle.fileno())
