"""Map a per-slide stage over many slides through an executor, collecting failures per slide.

The default is a local process pool; any object with ``submit(fn, *args)`` returning futures with
``.result()`` (a :class:`concurrent.futures.Executor`, a ``dask.distributed.Client``) can be passed instead,
which is how a cohort scales out to a cluster without changing the stage.

Every item can have a time budget (``timeout``, the CLI's ``--slide-timeout``): past it, the item fails with
:class:`~eosin.errors.SlideTimeoutError` and the others go on. Inside a worker process (or in this process) an
alarm interrupts the stage at its budget; a stage stuck inside C code past twice its budget has its local pool's
worker processes killed, and the items that were not finished are run again in a fresh pool. On a Dask cluster
an overdue task is cancelled and reported (its worker thread cannot be killed), and when no worker is left for
``EOSIN_DASK_NO_WORKER_WAIT`` seconds (default 60) the remaining items fail instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from eosin.errors import EosinError, SlideTimeoutError

__all__ = ["SlideResult", "map_slides"]


@dataclass
class SlideResult:
    """What a stage gave for one item: its value, or the error it raised (then ``value`` is None)."""

    item: Any
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def map_slides(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int = 1,
    progress: bool = False,
    desc: str = "slides",
    executor: Any | None = None,
    timeout: float | None = None,
) -> list[SlideResult]:
    """Run ``fn(item)`` for every item; results in the items' order.

    An error of one item (typed eosin errors, and unexpected ones too, which get their traceback attached as
    ``error.__notes__``) is recorded in its :class:`SlideResult` and never stops the others.

    Parameters
    ----------
    workers
        Processes of the local pool; 1 or less runs in this process. Ignored when ``executor`` is given.
    progress
        Show a progress bar on stderr.
    executor
        Any executor with ``submit``; its futures must have ``result()``.
    timeout
        Seconds one item may take (None or 0: no limit); an item past it fails with
        :class:`~eosin.errors.SlideTimeoutError`.
    """
    items = list(items)
    results = [SlideResult(item) for item in items]
    if not items:
        return results
    timeout = float(timeout) if timeout else None
    bar = _bar(len(items), desc) if progress else None
    try:
        if executor is None and workers <= 1:
            for i, item in enumerate(items):
                _settle(results[i], lambda item=item: _call(fn, item, timeout))
                if bar is not None:
                    bar.update(1)
            return results
        _Runner(fn, items, results, bar, timeout, executor, workers).run()
    finally:
        if bar is not None:
            bar.close()
    return results


class _Runner:
    """Items through a pool or an executor, with per-item deadlines and recovery from a killed pool."""

    def __init__(self, fn, items, results, bar, timeout, executor, workers):
        self.fn, self.items, self.results, self.bar, self.timeout = fn, items, results, bar, timeout
        self.executor, self.workers = executor, min(workers, len(items))
        self.dask = False

    def run(self) -> None:
        todo = list(range(len(self.items)))
        while todo:
            own = self.executor is None
            pool = _local_pool(min(self.workers, len(todo))) if own else self.executor
            try:
                todo = self._drain(pool, todo, own)
            finally:
                if own:
                    pool.shutdown(wait=not todo, cancel_futures=True)

    def _drain(self, pool, todo: list[int], own: bool) -> list[int]:
        """Submit ``todo``; settle results; return the items to run again (after the pool was killed)."""
        pending = {pool.submit(_call, self.fn, self.items[i], self.timeout): i for i in todo}
        self.dask = not isinstance(next(iter(pending)), Future)  # dask.distributed futures
        started: dict[Any, float] = {}
        no_workers_since: float | None = None
        while pending:
            done = self._wait(list(pending))
            for future in done:
                self._finish(pending.pop(future), future.result)
            if not pending:
                break
            now = time.monotonic()
            if self.dask:
                no_workers_since = self._check_workers(pending, no_workers_since, now)
                if no_workers_since is None and not pending:
                    break
            if self.timeout is None:
                continue
            for future in self._running(pending):
                started.setdefault(future, now)
            # the alarm inside the worker fires at the budget; this is the backstop for a stage stuck in C code
            limit = self.timeout * (2 if own else 1) + 2
            overdue = [f for f, t0 in started.items() if f in pending and now - t0 > limit]
            if not overdue:
                continue
            for future in overdue:
                i = pending.pop(future)
                future.cancel()
                self._finish(i, lambda i=i: _raise(_timeout_error(self.items[i], self.timeout, killed=own)))
            if own:  # the stuck worker cannot be interrupted: end the pool, run the unfinished items again
                _kill_workers(pool)
                return sorted(pending.values())
        return []

    def _wait(self, futures: list) -> list:
        if self.dask:
            from distributed import wait as dask_wait

            try:
                return list(dask_wait(futures, timeout=1.0, return_when="FIRST_COMPLETED").done)
            except TimeoutError:
                return []
        return list(wait(futures, timeout=1.0, return_when=FIRST_COMPLETED).done)

    def _running(self, pending: dict) -> list:
        if not self.dask:
            return [f for f in pending if f.running()]
        try:  # keys the scheduler has handed to a worker
            busy = {k for keys in self.executor.processing().values() for k in keys}
        except Exception:  # noqa: BLE001 - a scheduler that cannot answer: no deadline this round
            return []
        return [f for f in pending if f.key in busy]

    def _check_workers(self, pending: dict, since: float | None, now: float) -> float | None:
        try:
            n = len(self.executor.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - the scheduler itself is gone
            n = 0
        if n:
            return None
        since = since if since is not None else now
        wait_s = _no_worker_wait()
        if now - since > wait_s:
            error = EosinError(
                f"no Dask worker has been connected for {wait_s:.0f} s; {len(pending)} slide(s) were not run.",
                fix="check that the workers are alive (memory, crashes) and rerun; finished slides are kept "
                "(EOSIN_DASK_NO_WORKER_WAIT sets this wait)",
            )
            for future in list(pending):
                future.cancel()
                self._finish(pending.pop(future), lambda: _raise(error))
        return since

    def _finish(self, i: int, get: Callable[[], Any]) -> None:
        _settle(self.results[i], get)
        if self.bar is not None:
            self.bar.update(1)


def _raise(error: BaseException):
    raise error


def _timeout_error(item: Any, timeout: float, *, killed: bool = False) -> SlideTimeoutError:
    path = getattr(item, "path", item if isinstance(item, (str, os.PathLike)) else None)
    how = " and was stopped (its worker process was ended)" if killed else ""
    return SlideTimeoutError(
        f"took longer than its time budget of {timeout:g} s{how}; the other slides went on.",
        path=path,
        fix="if the slide is simply big, raise --slide-timeout (0: no limit); if it never finishes, the file is "
        "probably damaged: run 'eosin info --deep' on it",
    )


def _no_worker_wait() -> float:
    try:
        return float(os.environ.get("EOSIN_DASK_NO_WORKER_WAIT", "60"))
    except ValueError:
        return 60.0


def _kill_workers(pool: Any) -> None:
    for process in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


class _Failed:
    """A typed eosin error handed back as a value: executors (Dask) then do not log it as a crash."""

    def __init__(self, error: EosinError):
        self.error = error


@contextlib.contextmanager
def _alarm(timeout: float | None, item: Any) -> Iterator[None]:
    """Raise :class:`SlideTimeoutError` in this thread after ``timeout`` s (main thread of a process only)."""
    if (
        not timeout
        or threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "setitimer")
    ):
        yield
        return

    def expired(signum, frame):
        raise _timeout_error(item, timeout)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call(fn: Callable[[Any], Any], item: Any, timeout: float | None = None) -> Any:
    try:
        with _alarm(timeout, item):
            return fn(item)
    except EosinError as exc:
        return _Failed(exc)
    except Exception as exc:  # keep the worker's traceback for the report
        exc.add_note("".join(traceback.format_exception(exc)))
        raise


def _settle(result: SlideResult, get: Callable[[], Any]) -> None:
    try:
        value = get()
        if isinstance(value, _Failed):
            raise value.error
        result.value = value
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.error = exc


def _local_pool(workers: int) -> Executor:
    from eosin._mp import mp_context, worker_init

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp_context(), initializer=worker_init)


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="slide", file=sys.stderr, dynamic_ncols=True)
