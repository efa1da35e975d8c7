"""Advisory writer locks: which process is writing a staging folder, and whether it is still alive.

A writer holds an exclusive ``flock`` on a small lock file beside its staging folder for as long as it writes.
The kernel drops the lock when the process ends however it ends (``kill -9`` included), so a lock that can be
taken belongs to a dead writer: its folder may be resumed or removed. The file records the holder's pid, host
and start time, for messages only. On systems without ``fcntl`` (Windows) the lock is the file's exclusive
creation: writers stay apart, but a dead writer's lock stays taken (its folder is left for ``clean_staging``
after removing the lock file by hand).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock"]


class WriterLock:
    """An exclusive advisory lock on ``path``, held until :meth:`release` (or the process's end)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: str | os.PathLike[str]) -> WriterLock | None:
        """Take the lock without waiting; ``None`` when a live process holds it."""
        path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
        try:
            fd = os.open(path, flags, 0o666)
        except (FileNotFoundError, FileExistsError):  # its folder vanished; (no fcntl) someone holds it
            return None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder before us may have removed the file after we opened it: then our lock guards nothing
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except OSError:  # BlockingIOError: held by a live writer; FileNotFoundError: removed meanwhile
            os.close(fd)
            return None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return cls(path, fd)

    @staticmethod
    def holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """Who wrote the lock file (pid, host, since), or ``None`` when unreadable."""
        try:
            info = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock (removing first, so no one locks a file about to vanish)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:  # a writer dropped without release: its lock goes with it
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"WriterLock({str(self.path)!r}, held={self.held})"
