"""How eosin starts worker processes.

The default is ``forkserver`` where it exists (Linux), else ``spawn``: workers start clean, without copies of
the parent's threads (OpenCV's thread pool deadlocks in a ``fork``ed child) or of its open slide handles.
``EOSIN_START_METHOD`` overrides it. With ``forkserver`` and ``spawn``, Python re-imports the main script in
each worker, so a script that starts eosin's workers needs the ``if __name__ == "__main__":`` guard; when
workers die at start, eosin says so (:func:`broken_pool_error`).

Clean exits (``kill -9`` of the main process included):

- every worker runs :func:`worker_init`, whose watchdog thread waits on the parent's sentinel (a pipe that
  reaches end-of-file when the process that started the worker ends, however it ends) and then exits; with the
  workers gone, the fork server and Python's resource tracker see their last client leave and exit too, and the
  tracker unlinks the shared memory and semaphores the dead run left;
- shared memory blocks are named ``eosin_<pid>_<random>`` (:func:`shared_block`), and every new run removes
  the blocks of dead eosin processes first (:func:`sweep_shared_memory`), in case the tracker was killed too;
- the fork server starts with ``PYTHONSAFEPATH=1`` (Python 3.11+), so a file in the current folder named like a
  standard module (``inspect.py``) is never imported in place of it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "broken_pool_error",
    "mp_context",
    "pid_alive",
    "shared_block",
    "sweep_shared_memory",
    "worker_init",
]

_SHM_DIR = "/dev/shm"
_SHM_NAME = re.compile(r"^eosin_(\d+)_[0-9a-f]+$")


def mp_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    method = os.environ.get("EOSIN_START_METHOD") or ("forkserver" if "forkserver" in methods else "spawn")
    if method not in methods:
        from eosin.errors import UsageError

        raise UsageError(
            f"EOSIN_START_METHOD={method!r} is not available here.", fix=f"use one of {', '.join(methods)}"
        )
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # modules imported once in the fork server, so each worker starts without importing them again
        ctx.set_forkserver_preload(["numpy", "eosin.slide", "eosin.tiles"])
        from multiprocessing import forkserver

        with _safe_path():  # started now, while the current folder is kept off its sys.path
            forkserver.ensure_running()
    return ctx


@contextlib.contextmanager
def _safe_path() -> Iterator[None]:
    """Child interpreters started inside do not put the current folder first on ``sys.path`` (3.11+)."""
    old = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = old


def worker_init(initializer: Callable[..., Any] | None = None, *initargs: Any) -> None:
    """Initializer of every eosin worker process: a parent watchdog, then ``initializer(*initargs)``.

    Pass it as ``ProcessPoolExecutor(initializer=worker_init, initargs=(initializer, *initargs))``.
    """
    _watch_parent()
    if initializer is not None:
        initializer(*initargs)


def _watch_parent() -> None:
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    ppid = os.getppid()

    def watch() -> None:
        if sentinel is not None:
            from multiprocessing.connection import wait

            wait([sentinel])  # returns when the parent's end of the pipe closes: the parent is gone
        else:  # pragma: no cover - no sentinel (an unusual start method): poll the parent pid
            import time

            while os.getppid() == ppid:
                time.sleep(1.0)
        os._exit(70)  # no clean-up to wait for: the parent that would read our results is dead

    threading.Thread(target=watch, name="eosin-parent-watchdog", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def shared_block(size: int):
    """A new shared memory block named ``eosin_<pid>_<random>``, so a later run can tell whose it was."""
    from multiprocessing import shared_memory

    while True:
        name = f"eosin_{os.getpid()}_{os.urandom(6).hex()}"
        try:
            return shared_memory.SharedMemory(name=name, create=True, size=size)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def sweep_shared_memory() -> int:
    """Unlink the shared memory blocks left by eosin processes that no longer run; returns how many.

    Linux only (where ``/dev/shm`` lists them); elsewhere nothing is done.
    """
    if not sys.platform.startswith("linux") or not os.path.isdir(_SHM_DIR):
        return 0
    removed = 0
    for name in os.listdir(_SHM_DIR):
        match = _SHM_NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(_SHM_DIR, name))
                removed += 1
    return removed


def broken_pool_error(what: str):
    """The error to raise when a worker pool broke (a worker died or could not start)."""
    from eosin.errors import EosinError

    return EosinError(
        f"a worker process {what} died.",
        fix='if this runs from a script, put its code under `if __name__ == "__main__":` (Python re-imports the '
        "script in each worker); otherwise rerun with 0 workers (workers=0 / --workers 0) to see the error, "
        "or check memory",
    )
