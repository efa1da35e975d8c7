"""Where a cohort run's slides and workers come from: slide files under the paths given, and the executor.

One home for both, used by the per-slide CLI commands and by :func:`eosin.pipeline.run` alike.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from eosin.errors import SlideNotFoundError, UsageError

__all__ = ["dask_executor", "find_slides"]


def find_slides(
    paths: Iterable[str | os.PathLike[str]], *, on_skipped: Callable[[list[Path]], None] | None = None
) -> list[Path]:
    """Files named and slide files inside folders named (not recursive, hidden files skipped), sorted per folder.

    A file named explicitly is always tried (an unknown format then fails with its own error); inside a folder,
    files whose ending is not a slide or image format (:data:`eosin.slide.SLIDE_SUFFIXES`) are skipped and passed
    to ``on_skipped``. A MIRAX slide (``.mrxs`` with its data folder) and a DICOM folder count as one slide: a
    folder that holds ``.dcm`` files and nothing else is taken whole, and the data folder beside a ``.mrxs`` file
    is not entered.

    Raises
    ------
    SlideNotFoundError
        A path that does not exist.
    UsageError
        No slide or image file among the inputs.
    """
    from eosin.slide import SLIDE_SUFFIXES

    out: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SlideNotFoundError("no such file or folder.", path=path, fix="check the path")
        if not path.is_dir():  # a file (or a FIFO or device: the reader refuses those with a clear error)
            out.append(path)
            continue
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        if files and all(p.suffix.lower() == ".dcm" for p in files) and len(files) > 1:
            out.append(path)  # a DICOM WSI series: one slide
            continue
        mirax_dirs = {p.with_suffix("") for p in files if p.suffix.lower() == ".mrxs"}
        out.extend(p for p in files if p.suffix.lower() in SLIDE_SUFFIXES)
        skipped.extend(p for p in files if p.suffix.lower() not in SLIDE_SUFFIXES)
        out.extend(p for p in entries if p.is_dir() and p not in mirax_dirs and _is_dicom_dir(p))
    if skipped and on_skipped is not None:
        on_skipped(skipped)
    if not out:
        raise UsageError(
            "no slide or image files in the inputs given.", fix="name slide files or folders holding them"
        )
    return out


def _is_dicom_dir(path: Path) -> bool:
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(p.suffix.lower() == ".dcm" for p in files)


@contextlib.contextmanager
def dask_executor(scheduler: str | None, *, n_workers: int | None = None) -> Iterator[Any]:
    """None (``map_slides`` then uses a local process pool), or a Dask client for ``scheduler``.

    ``"local"`` starts a cluster on this machine only (scheduler, workers and the HTTP endpoint on 127.0.0.1, no
    dashboard), with ``n_workers`` processes (default: the usable CPUs); an address (``tcp://host:8786``)
    connects to a running scheduler. Anyone who can reach a scheduler can run code on its workers: keep it on a
    private network.
    """
    if not scheduler:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "--scheduler needs Dask's distributed package.", fix="pip install 'eosin[dask]'"
        ) from None
    cluster = None
    try:
        if scheduler == "local":
            if n_workers is None:
                from eosin.tiles import default_workers

                n_workers = default_workers()
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout="20s")
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise UsageError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}).",
            fix="check the address (tcp://host:8786) and that the scheduler runs",
        ) from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
