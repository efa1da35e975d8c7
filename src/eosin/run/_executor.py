"""Map a per-slide stage over many slides through an executor, collecting failures per slide.

The default is a local process pool; any object with ``submit(fn, *args)`` returning futures with
``.result()`` (a :class:`concurrent.futures.Executor`, a ``dask.distributed.Client``) can be passed instead,
which is how a cohort scales out to a cluster without changing the stage.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from eosin.errors import EosinError

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
    """
    items = list(items)
    results = [SlideResult(item) for item in items]
    if not items:
        return results
    bar = _bar(len(items), desc) if progress else None
    try:
        if executor is None and workers <= 1:
            for i, item in enumerate(items):
                _settle(results[i], lambda item=item: fn(item))
                if bar is not None:
                    bar.update(1)
            return results
        own = executor is None
        pool = executor if executor is not None else _local_pool(min(workers, len(items)))
        try:
            futures = {pool.submit(_call, fn, item): i for i, item in enumerate(items)}
            for future in _completed(futures):
                _settle(results[futures[future]], future.result)
                if bar is not None:
                    bar.update(1)
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return results


class _Failed:
    """A typed eosin error handed back as a value: executors (Dask) then do not log it as a crash."""

    def __init__(self, error: EosinError):
        self.error = error


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
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


def _completed(futures: dict) -> Iterable[Future]:
    first = next(iter(futures))
    if isinstance(first, Future):
        return as_completed(futures)
    try:  # dask.distributed futures
        from distributed import as_completed as dask_completed

        return dask_completed(list(futures))
    except ImportError:  # pragma: no cover - any other executor: wait in order
        return list(futures)


def _local_pool(workers: int) -> Executor:
    from eosin._mp import mp_context, worker_init

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp_context(), initializer=worker_init)


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="slide", file=sys.stderr, dynamic_ncols=True)
