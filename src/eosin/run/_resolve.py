"""Which store an input means: a store folder, an output folder holding one, or a slide to tile into one.

One home for the commands that read stores (``eosin embed``, ``eosin predict``, ``eosin train mil``) and for the
pipeline: stores are laid out as ``OUT/<name>/store.zarr`` (:func:`~eosin.run.plan_outputs`), and a store is
named after that folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from eosin.errors import EosinError, UsageError
from eosin.run._stages import STORE_NAME, SlideJob, plan_outputs

__all__ = ["resolve_store", "resolve_stores", "store_in", "store_name"]


def store_in(path: str | os.PathLike[str]) -> Path | None:
    """The store an input names, or None (a slide file, a folder of slides, nothing at all).

    A folder holding ``zarr.json`` or named ``*.zarr`` is a store; an output folder holding ``store.zarr``
    (``OUT/<name>/`` of ``eosin tile``) names that store.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "zarr.json").exists() or path.suffix == ".zarr":
        return path
    if (path / STORE_NAME).exists():
        return path / STORE_NAME
    return None


def store_name(store: str | os.PathLike[str]) -> str:
    """The slide name of a store: its folder's name for ``<name>/store.zarr``, else the store's own stem."""
    store = Path(store)
    return store.parent.name if store.name == STORE_NAME else store.stem


def resolve_store(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    tile: Callable[[SlideJob], Any] | None = None,
    job: SlideJob | None = None,
) -> tuple[Path, Path]:
    """The store of one input and the folder its other outputs go to.

    A store (:func:`store_in`) is used as it is; its outputs go to ``out/<name>`` (``out`` given) or beside it.
    A slide file is tiled by ``tile(job)`` into ``out/<name>/store.zarr`` (``job`` from
    :func:`~eosin.run.plan_outputs`, planned here when not given), or refused when ``tile`` is None.

    Raises
    ------
    UsageError
        A folder that holds no store, a slide without ``tile``, or a slide without ``out``.
    """
    path = Path(path)
    store = store_in(path)
    if store is not None:
        return store, (Path(out) / store_name(store) if out is not None else store.parent)
    if path.is_dir():
        raise UsageError("no store here.", path=path, fix="pass a store.zarr folder or a slide file")
    if tile is None:
        raise UsageError(
            "a store is needed here, not a slide file.",
            path=path,
            fix="tile it first (eosin tile SLIDE --out DIR, or eosin run) and pass the store",
        )
    if out is None:
        raise UsageError(
            "a slide file needs --out (its store is made there).", path=path, fix="add --out DIR"
        )
    job = job or plan_outputs([path], Path(out))[0]
    tile(job)
    return job.store_path, job.out_dir


def resolve_stores(
    inputs: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    tile: Callable[[SlideJob], Any] | None = None,
    on_error: Callable[[Path, EosinError], None] | None = None,
    on_skipped: Callable[[list[Path]], None] | None = None,
) -> list[tuple[Path, Path]]:
    """``(store, output folder)`` of every input: the stores named (:func:`store_in`) in the order given, then
    the stores made by ``tile(job)`` from the other inputs (slide files and folders of slides:
    :func:`~eosin.run.find_slides`, ``on_skipped`` told of files skipped there), each in ``out/<name>``.

    A slide whose tiling fails with an :class:`~eosin.errors.EosinError` is passed to ``on_error`` and left
    out (raised when ``on_error`` is None).

    Raises
    ------
    UsageError
        Slides given without ``out`` (or without ``tile``).
    """
    from eosin.run._inputs import find_slides

    inputs = [Path(p) for p in inputs]
    direct = [resolve_store(p, out) for p in inputs if store_in(p) is not None]
    slides = [p for p in inputs if store_in(p) is None]
    if not slides:
        return direct
    if out is None:
        raise UsageError(
            "slides were given, so they must be tiled first.", fix="add --out DIR for their stores"
        )
    made = []
    for job in plan_outputs(find_slides(slides, on_skipped=on_skipped), Path(out)):
        try:
            made.append(resolve_store(job.path, out, tile=tile, job=job))
        except EosinError as exc:
            if on_error is None or tile is None:
                raise
            on_error(job.path, exc)
    return direct + made
