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
import errno
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
from eosin.io._accessors import StoreAccessors
from eosin.io._atomic import atomic_write_text
from eosin.io._identity import check_identity, slide_identity
from eosin.io._lock import WriterLock

__all__ = ["FORMAT", "VERSION", "SlideStore", "StoreGroup"]

FORMAT = "eosin.slide-store"
VERSION = 1
_META = "zarr.json"
_STAGING = ".staging"
_PARTIAL = ".partial"
_LOCK = ".lock"
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


class SlideStore(StoreAccessors):
    """The store of one slide. Create with :meth:`create`, open an existing one with :meth:`open`; read its groups
    with the typed accessors (:meth:`grid`, :meth:`tissue`, :meth:`features`, :meth:`predictions`...)."""

    def __init__(self, path: Path, attrs: dict[str, Any]):
        self.path = Path(path)
        self.attrs = attrs

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        slide: Mapping[str, Any] | None = None,
        source: str | os.PathLike[str] | None = None,
    ) -> SlideStore:
        """Open the store at ``path``, creating it (atomically) when absent.

        ``slide`` is the slide's metadata record (:func:`eosin.slide.diagnose`); an existing store whose record
        differs (say, a new ``--slide-mpp``) has its record updated. ``source`` is the slide file the store is
        for: its identity (:func:`~eosin.io.slide_identity`: size and a content fingerprint) is recorded, and an
        existing store made for another slide is refused with :class:`~eosin.errors.StoreError`.
        """
        path = Path(path)
        record = _jsonable(dict(slide)) if slide is not None else None
        identity = slide_identity(source) if source is not None else None
        if path.exists():
            store = cls.open(path)
            check_identity(store.attrs.get("source"), identity, path)
            changed = False
            if record is not None and store.attrs.get("slide") != record:
                store.attrs["slide"] = record
                changed = True
            if identity is not None and store.attrs.get("source") != identity:
                store.attrs["source"] = identity  # first seen, or a byte-identical copy elsewhere
                changed = True
            if changed:
                store._write_root()
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        attrs = {"format": FORMAT, "version": VERSION, "created": _now(), "slide": record}
        if identity is not None:
            attrs["source"] = identity
        _write_meta(tmp, attrs)
        try:
            os.rename(tmp, path)
        except OSError:  # another process created it first
            shutil.rmtree(tmp, ignore_errors=True)
            return cls.create(path, slide=slide, source=source)
        return cls(path, attrs)

    def check_source(self, source: str | os.PathLike[str]) -> None:
        """Raise :class:`~eosin.errors.StoreError` unless ``source`` is the slide this store was made for.

        Stores that record no identity (made before identities were recorded) accept any slide.
        """
        check_identity(self.attrs.get("source"), slide_identity(source), self.path)

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
        self.clean_staging(partial=False)  # debris of dead writers (never a live writer's folder)
        staging, lock = _new_staging(self.path, f"{kind}.{key}")
        try:
            group = zarr.open_group(str(staging), mode="w", attributes=_jsonable(dict(attrs or {})))
            yield group
            self._install(staging, kind, key)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
            lock.release()

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

    def _install(self, staging: Path, kind: str, key: str, *, replace: bool = True) -> bool:
        """Rename a finished staging folder to ``kind/key``; returns whether it was installed.

        An existing complete group is replaced (renamed away first) when ``replace``. Otherwise, when its
        attributes equal the staged group's (another writer of the same request finished first: the same
        result), it wins and the staging folder is discarded; a group made otherwise (other weights, other
        settings) is replaced. A folder at ``kind/key`` that is not a complete group (a dead writer's debris) is
        always moved away.
        """
        ours = _read_json(staging / _META).get("attributes")
        self._ensure_kind(kind)
        final = self.path / kind / key
        for _ in range(8):
            try:
                os.rename(staging, final)
                return True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            if _is_node(final) and not replace and _read_json(final / _META).get("attributes") == ours:
                shutil.rmtree(staging, ignore_errors=True)
                return False
            trash = self.path / _STAGING / f"trash.{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(FileNotFoundError):  # another writer moved it first
                os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        raise StoreError(  # pragma: no cover - eight writers replacing one group at once
            f"could not publish {kind}/{key}: other writers kept replacing it.",
            path=self.path,
            fix="run one writer per group at a time",
        )

    def delete_group(self, kind: str, key: str) -> None:
        final = self.path / kind / key
        if not final.exists():
            return
        trash = self.path / _STAGING / f"trash.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(final, trash)  # vanishes from listings at once, then is removed
        shutil.rmtree(trash, ignore_errors=True)

    def clean_staging(self, *, partial: bool = True) -> int:
        """Remove leftovers of dead writers from ``.staging``; returns how many were removed.

        Folders a live writer holds (its lock is taken) are left alone, so this is safe while other processes
        write. ``partial=False`` keeps dead writers' resumable partial groups (the next writer of that group
        resumes them).
        """
        folder = self.path / _STAGING
        if not folder.is_dir():
            return 0
        removed = 0
        for p in sorted(folder.iterdir()):
            if p.suffix == _LOCK or (not partial and p.name.endswith(_PARTIAL)):
                continue
            lock = WriterLock.try_acquire(_lock_of(p))
            if lock is None:
                continue  # a live writer's
            try:
                if p.exists():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    removed += 1
            finally:
                lock.release()
        for p in folder.glob(f"*{_LOCK}"):  # lock files whose folder is gone
            stem = p.name[: -len(_LOCK)]
            gone = not (folder / stem).exists() and not (folder / (stem + _PARTIAL)).exists()
            if gone and (lock := WriterLock.try_acquire(p)) is not None:
                lock.release()
        return removed

    # ------------------------------------------------------------------ internals
    def _ensure_kind(self, kind: str) -> None:
        folder = self.path / kind
        if not _is_node(folder):
            folder.mkdir(exist_ok=True)
            _write_meta(folder, {"kind": kind})

    def _write_root(self) -> None:
        _write_meta(self.path, self.attrs)


class PartialGroup:
    """A group filled row block by row block, resumable after a crash, one per writer.

    Each writer fills its own folder ``.staging/<kind>.<key>.<writer id>.partial``, holding a lock on it
    (:class:`~eosin.io._lock.WriterLock`) with a progress file recording how many leading rows are complete;
    :meth:`mark` is called after each block is written, :meth:`commit` renames the finished group into place.
    A new writer resumes a dead writer's folder with the same fingerprint from :attr:`done` (blocks after it are
    rewritten whole, so a block cut short by a kill is never trusted) and removes dead writers' folders with
    another fingerprint; live writers' folders are left alone. Two live writers of one group both compute; the
    first to commit publishes, and the other discards its copy when the published group has the same attributes
    (the same request: the same result) or replaces it otherwise (:meth:`commit`).
    """

    _PROGRESS = "eosin-progress.json"

    def __init__(self, store: SlideStore, kind: str, key: str, attrs: dict[str, Any], fingerprint: str):
        import zarr

        self.store, self.kind, self.key, self.fingerprint = store, kind, key, fingerprint
        staging = store.path / _STAGING
        staging.mkdir(exist_ok=True)
        mine = re.compile(rf"^{re.escape(kind)}\.{re.escape(key)}(\.[0-9a-f]{{12}})?{re.escape(_PARTIAL)}$")
        dead: list[tuple[int, Path, WriterLock]] = []
        for folder in sorted(p for p in staging.iterdir() if mine.match(p.name)):
            lock = WriterLock.try_acquire(_lock_of(folder))
            if lock is None:
                continue  # a live writer's
            progress = _read_json(folder / self._PROGRESS)
            same = progress.get("fingerprint") == fingerprint and _is_node(folder) and folder.is_dir()
            dead.append((int(progress.get("done", 0)) if same else -1, folder, lock))
        dead.sort(key=lambda t: -t[0])
        for done, folder, lock in dead[1:] if dead and dead[0][0] >= 0 else dead:
            shutil.rmtree(folder, ignore_errors=True)
            lock.release()
        if dead and dead[0][0] >= 0:
            self.done, self.folder, self._lock = dead[0]
            self.group = zarr.open_group(str(self.folder), mode="r+")
        else:
            self.folder, self._lock = _new_staging(store.path, f"{kind}.{key}", suffix=_PARTIAL)
            self.done = 0
            self.group = zarr.open_group(str(self.folder), mode="w", attributes=_jsonable(attrs))
            self.mark(0)
        #: after :meth:`commit`: False when another writer had published the group first (ours was discarded)
        self.installed: bool | None = None

    def _read_progress(self) -> dict[str, Any] | None:
        return _read_json(self.folder / self._PROGRESS) or None

    def mark(self, done: int) -> None:
        """Record that the first ``done`` rows are written."""
        atomic_write_text(
            self.folder / self._PROGRESS, json.dumps({"fingerprint": self.fingerprint, "done": done})
        )
        self.done = done

    def commit(self, *, replace: bool = False) -> bool:
        """Publish the finished group; returns whether this writer's copy was installed.

        When a complete group with the same attributes is already there (another writer of the same request
        finished first) it is kept and this copy is discarded, unless ``replace`` (recomputing on purpose); a
        group with other attributes (made by other weights, say) is replaced.
        """
        (self.folder / self._PROGRESS).unlink(missing_ok=True)
        try:
            self.installed = self.store._install(self.folder, self.kind, self.key, replace=replace)
        finally:
            self._lock.release()
        return self.installed


def _is_node(path: Path) -> bool:
    return (path / _META).is_file()


def _lock_of(entry: Path) -> Path:
    """The lock file of a staging entry: ``<name without .partial>.lock`` beside it."""
    name = entry.name[: -len(_PARTIAL)] if entry.name.endswith(_PARTIAL) else entry.name
    return entry.with_name(name + _LOCK)


def _new_staging(store: Path, stem: str, suffix: str = "") -> tuple[Path, WriterLock]:
    """A fresh staging folder of this writer, locked before it exists (so no one takes it for a dead one's)."""
    (store / _STAGING).mkdir(exist_ok=True)
    while True:
        folder = store / _STAGING / f"{stem}.{uuid.uuid4().hex[:12]}{suffix}"
        lock = WriterLock.try_acquire(_lock_of(folder))
        if lock is not None and not folder.exists():
            folder.mkdir()
            return folder, lock
        if lock is not None:  # pragma: no cover - a uuid collision
            lock.release()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
