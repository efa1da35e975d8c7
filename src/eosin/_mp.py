"""How eosin starts worker processes.

The default is ``forkserver`` where it exists (Linux), else ``spawn``: workers start clean, without copies of
the parent's threads (OpenCV's thread pool deadlocks in a ``fork``ed child) or of its open slide handles.
``EOSIN_START_METHOD`` overrides it. With ``forkserver`` and ``spawn``, Python re-imports the main script in
each worker, so a script that starts eosin's workers needs the ``if __name__ == "__main__":`` guard; when
workers die at start, eosin says so (:func:`broken_pool_error`).
"""

from __future__ import annotations

import multiprocessing
import os

__all__ = ["broken_pool_error", "mp_context"]


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
    return ctx


def broken_pool_error(what: str):
    """The error to raise when a worker pool broke (a worker died or could not start)."""
    from eosin.errors import EosinError

    return EosinError(
        f"a worker process {what} died.",
        fix='if this runs from a script, put its code under `if __name__ == "__main__":` (Python re-imports the '
        "script in each worker); otherwise rerun with 0 workers (workers=0 / --workers 0) to see the error, "
        "or check memory",
    )
