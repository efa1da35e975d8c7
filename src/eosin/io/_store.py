"""One store per slide: a zarr (v3) folder whose groups are keyed by the parameters that made them.

Layout (docs/format.md is the reference)::

    store.zarr/
      zarr.json                 root group; attributes: format, version, slide (the doctor's record)
      tissue/<key>/             masks of one tissue detection (tissue, pen, sections) + their resolution
      grids/<key>/              one tile grid (coords, tissue_fraction, pen_fraction, section) + its parameters
      <kind>/<key>/             later stages (features/<encoder>..., predictions/...) follow the same rule
      .staging/                 groups being written (never read; removed by clean_staging)

Every group is written whole in ``.staging`` and then renamed into place (a rename is atomic on one file
system), so a crash leaves the previous state or nothing, never half a group. Group and root metadata
(``zarr.json``) are small JSON files written atomically too. Any zarr v3 reader can open the store.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import StoreError
from eosin.io._atomic import atomic_write_text

__all__ = ["FORMAT", "VERSION", "SlideStore", "StoreGroup"]

FORMAT = "eosin.slide-store"
VERSION = 1
_META = "zarr.json"
_STAGING = ".staging"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


class StoreGroup(Mapping[str, Any]):
    """A stored group, read lazily: ``group["coords"]`` is a zarr array (``np.asarray`` reads it whole)."""

    def __init__(self, path: Path, group: Any):
        self.path = path
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._group[name]
        except KeyError:
            raise KeyError(f"group {self.path} has no array {name!r} (it has: {', '.join(self)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._group.array_keys()))

    def __len__(self) -> int:
        return len(list(self._group.array_keys()))

    def __repr__(self) -> str:
        return f"StoreGroup({str(self.path)!r}, arrays={list(self)})"


class SlideStore:
    """The store of one slide. Create with :meth:`create`, open an existing one with :meth:`open`."""

    def __init__(self, path: Path, attrs: dict[str, Any]):
        self.path = Path(path)
        self.attrs = attrs

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, slide: Mapping[str, Any] | None = None) -> SlideStore:
        """Open the store at ``path``, creating it (atomically) when absent.

        ``slide`` is the slide's metadata record (:func:`eosin.slide.diagnose`); an existing store whose record
        differs (say, a new ``--slide-mpp``) has its record updated.
        """
        path = Path(path)
        record = _jsonable(dict(slide)) if slide is not None else None
        if path.exists():
            store = cls.open(path)
            if record is not None and store.attrs.get("slide") != record:
                store.attrs["slide"] = record
                store._write_root()
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        attrs = {"format": FORMAT, "version": VERSION, "created": _now(), "slide": record}
        _write_meta(tmp, attrs)
        try:
            os.rename(tmp, path)
        except OSError:  # another process created it first
            shutil.rmtree(tmp, ignore_errors=True)
            return cls.open(path)
        return cls(path, attrs)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SlideStore:
        """Open an existing store; :class:`~eosin.errors.StoreError` when ``path`` is not one eosin can read."""
        path = Path(path)
        meta = path / _META
        if not meta.is_file():
            raise StoreError(
                "not an eosin store (no zarr.json).",
                path=path,
                fix="give the store.zarr folder that eosin tissue / eosin tile wrote",
            )
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"the store's zarr.json is unreadable ({exc}).",
                path=path,
                fix="delete the store and run the stage again",
            ) from None
        attrs = doc.get("attributes", {}) if isinstance(doc, dict) else {}
        if attrs.get("format") != FORMAT:
            raise StoreError(
                "a zarr store, but not an eosin slide store.",
                path=path,
                fix="give the store.zarr folder that eosin wrote",
            )
        if int(attrs.get("version", 0)) > VERSION:
            raise StoreError(
                f"the store has format version {attrs.get('version')}; this eosin reads up to {VERSION}.",
                path=path,
                fix="upgrade eosin (pip install -U eosin)",
            )
        return cls(path, attrs)

    @property
    def slide(self) -> dict[str, Any] | None:
        """The slide's metadata record as stored."""
        return self.attrs.get("slide")

    def __repr__(self) -> str:
        return f"SlideStore({str(self.path)!r})"

    # ------------------------------------------------------------------ listing
    def kinds(self) -> list[str]:
        """Kinds of groups present (``tissue``, ``grids``, ...)."""
        return sorted(
            p.name for p in self.path.iterdir() if p.is_dir() and _is_node(p) and not p.name.startswith(".")
        )

    def keys(self, kind: str) -> list[str]:
        """Keys of the complete groups of one kind (empty when the kind is absent)."""
        folder = self.path / kind
        if not folder.is_dir():
            return []
        return sorted(
            p.name for p in folder.iterdir() if p.is_dir() and _is_node(p) and not p.name.startswith(".")
        )

    def has(self, kind: str, key: str) -> bool:
        return _is_node(self.path / kind / key)

    # ------------------------------------------------------------------ reading
    def read_group(self, kind: str, key: str) -> StoreGroup:
        import zarr

        node = self.path / kind / key
        if not _is_node(node):
            raise StoreError(
                f"the store has no group {kind}/{key}.",
                path=self.path,
                fix=f"stored {kind}: {', '.join(self.keys(kind)) or 'none'}",
            )
        return StoreGroup(node, zarr.open_group(str(node), mode="r"))

    # ------------------------------------------------------------------ writing
    def write_group(
        self,
        kind: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
        chunks: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        """Write a whole group at once (atomically). Existing groups are kept unless ``overwrite``."""
        with self.group_writer(kind, key, attrs, overwrite=overwrite) as group:
            for name, value in arrays.items():
                value = np.asarray(value)
                chunk = (chunks or {}).get(name) or _default_chunks(value)
                array = group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=chunk)
                if value.size:
                    array[...] = value

    @contextlib.contextmanager
    def group_writer(
        self, kind: str, key: str, attrs: Mapping[str, Any] | None = None, *, overwrite: bool = False
    ) -> Iterator[Any]:
        """Yield a writable zarr group in staging; it replaces ``kind/key`` only when the block ends cleanly.

        For stages that stream their output (features batch by batch, predictions tile by tile).
        """
        import zarr

        for name in (kind, key):
            if not _NAME.match(name):
                raise StoreError(
                    f"invalid group name {name!r} (letters, digits and ._+=- only).", path=self.path
                )
        final = self.path / kind / key
        if _is_node(final) and not overwrite:
            raise StoreError(
                f"the store already has {kind}/{key}.",
                path=self.path,
                fix="pass overwrite=True, or delete the group first",
            )
        staging = self.path / _STAGING / f"{kind}.{key}.{uuid.uuid4().hex[:8]}"
        staging.parent.mkdir(exist_ok=True)
        try:
            group = zarr.open_group(str(staging), mode="w", attributes=_jsonable(dict(attrs or {})))
            yield group
            self._install(staging, kind, key)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def partial_group(
        self, kind: str, key: str, attrs: Mapping[str, Any] | None = None, *, fingerprint: str
    ) -> PartialGroup:
        """A group written piece by piece that survives being killed: see :class:`PartialGroup`.

        ``fingerprint`` identifies the work (its parameters); a leftover partial group with another fingerprint
        is discarded and started afresh.
        """
        for name in (kind, key):
            if not _NAME.match(name):
                raise StoreError(
                    f"invalid group name {name!r} (letters, digits and ._+=- only).", path=self.path
                )
        return PartialGroup(self, kind, key, dict(attrs or {}), fingerprint)

    def _install(self, staging: Path, kind: str, key: str) -> None:
        """Rename a finished staging folder to ``kind/key``, replacing any group there."""
        self._ensure_kind(kind)
        final = self.path / kind / key
        if _is_node(final):
            trash = self.path / _STAGING / f"trash.{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            os.rename(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, final)

    def delete_group(self, kind: str, key: str) -> None:
        final = self.path / kind / key
        if not final.exists():
            return
        trash = self.path / _STAGING / f"trash.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(final, trash)  # vanishes from listings at once, then is removed
        shutil.rmtree(trash, ignore_errors=True)

    def clean_staging(self) -> int:
        """Remove leftovers of interrupted writes; returns how many were removed."""
        folder = self.path / _STAGING
        if not folder.is_dir():
            return 0
        leftovers = list(folder.iterdir())
        for p in leftovers:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return len(leftovers)

    # ------------------------------------------------------------------ internals
    def _ensure_kind(self, kind: str) -> None:
        folder = self.path / kind
        if not _is_node(folder):
            folder.mkdir(exist_ok=True)
            _write_meta(folder, {"kind": kind})

    def _write_root(self) -> None:
        _write_meta(self.path, self.attrs)


class PartialGroup:
    """A group filled row block by row block, resumable after a crash.

    It lives in ``.staging/<kind>.<key>.partial`` with a progress file recording how many leading rows are
    complete; :meth:`mark` is called after each block is written, :meth:`commit` renames the finished group into
    place. A run killed half way leaves the partial group; the next run with the same fingerprint continues from
    :attr:`done` (blocks after it are rewritten whole, so a block cut short by the kill is never trusted).
    """

    _PROGRESS = "eosin-progress.json"

    def __init__(self, store: SlideStore, kind: str, key: str, attrs: dict[str, Any], fingerprint: str):
        import zarr

        self.store, self.kind, self.key, self.fingerprint = store, kind, key, fingerprint
        self.folder = store.path / _STAGING / f"{kind}.{key}.partial"
        progress = self._read_progress()
        if progress is not None and progress.get("fingerprint") == fingerprint and _is_node(self.folder):
            self.done = int(progress["done"])
            self.group = zarr.open_group(str(self.folder), mode="r+")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.parent.mkdir(exist_ok=True)
            self.done = 0
            self.group = zarr.open_group(str(self.folder), mode="w", attributes=_jsonable(attrs))
            self.mark(0)

    def _read_progress(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / self._PROGRESS).read_text())
        except (OSError, ValueError):
            return None

    def mark(self, done: int) -> None:
        """Record that the first ``done`` rows are written."""
        atomic_write_text(
            self.folder / self._PROGRESS, json.dumps({"fingerprint": self.fingerprint, "done": done})
        )
        self.done = done

    def commit(self) -> None:
        (self.folder / self._PROGRESS).unlink(missing_ok=True)
        self.store._install(self.folder, self.kind, self.key)


def _is_node(path: Path) -> bool:
    return (path / _META).is_file()


def _write_meta(folder: Path, attrs: Mapping[str, Any]) -> None:
    doc = {"zarr_format": 3, "node_type": "group", "attributes": _jsonable(dict(attrs))}
    atomic_write_text(folder / _META, json.dumps(doc, indent=1))


def _default_chunks(value: np.ndarray) -> tuple[int, ...]:
    """Chunks of about 4 MiB along the first axis (rows of tiles, rows of a mask)."""
    if value.ndim == 0:
        return ()
    row = max(1, int(np.prod(value.shape[1:], dtype=np.int64)) * value.dtype.itemsize)
    first = int(max(1, min(value.shape[0], (4 << 20) // row)))
    return (first, *value.shape[1:])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Attributes as plain JSON: numpy scalars and arrays, tuples and paths converted; NaN becomes None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
