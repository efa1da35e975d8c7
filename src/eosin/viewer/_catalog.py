"""What the viewer serves: the slides and stores found under the paths it was given, and nothing else.

Every slide gets a short id at start-up; requests name slides by id, never by path. Folders are walked without
following symbolic links, and a link whose target lies outside the given roots is skipped. A store names its slide
by path (the doctor's record); that slide is served with the store, since the user gave the store.

File names that come with a request (annotation files) go through :func:`safe_path`, which refuses absolute paths,
``..``, and anything (links included) that resolves outside its root.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eosin.errors import SlideNotFoundError, UsageError

__all__ = ["Catalog", "SlideEntry", "safe_path"]

STORE_NAME = "store.zarr"
_MAX_DEPTH = 4
#: open handles per slide (concurrent tile reads); opening a big slide costs far more than reading a tile
MAX_HANDLES = min(8, max(2, os.cpu_count() or 2))
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class SlideEntry:
    """One slide of the cohort: its file (if known), its stores and, once asked, the doctor's record."""

    id: str
    name: str
    slide_path: Path | None
    stores: list[Path] = field(default_factory=list)
    slide_mpp: float | None = None
    _record: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pool: queue.LifoQueue = field(default_factory=queue.LifoQueue, repr=False)
    _pool_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _opened: int = 0

    @property
    def record(self) -> dict[str, Any]:
        """The slide doctor's record (problems included); an unreadable slide gives an ``unreadable`` problem."""
        with self._lock:
            if self._record is None:
                self._record = self._diagnose()
            return self._record

    def _diagnose(self) -> dict[str, Any]:
        from eosin.slide import diagnose_path

        if self.slide_path is None:
            stored = _store_record(self.stores[0]) if self.stores else {}
            return {
                **stored,
                "problems": [
                    {
                        "code": "unreadable",
                        "message": "the store records no slide file, so there are no pixels to show.",
                    }
                ],
            }
        kwargs = {"slide_mpp": self.slide_mpp} if self.slide_mpp else {}
        try:
            return diagnose_path(self.slide_path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one bad slide must not take the cohort page down
            return {
                "path": str(self.slide_path),
                "problems": [{"code": "unreadable", "message": str(exc), "error": type(exc).__name__}],
            }

    @property
    def readable(self) -> bool:
        return not any(p.get("code") == "unreadable" for p in self.record.get("problems", []))

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        """Borrow an open :class:`~eosin.slide.Slide` of this entry for one read.

        Backends keep per-handle caches that are not thread-safe, so each concurrent reader gets its own handle;
        handles are pooled (at most :data:`MAX_HANDLES` are opened, then readers wait for one), because opening a
        big slide costs far more than reading a tile from it.
        """
        try:
            slide = self._pool.get_nowait()
        except queue.Empty:
            with self._pool_lock:
                can_open = self._opened < MAX_HANDLES
                self._opened += int(can_open)
            if can_open:
                try:
                    slide = self._open_new()
                except BaseException:
                    with self._pool_lock:
                        self._opened -= 1
                    raise
            else:
                slide = self._pool.get()  # wait for a handle to come back
        try:
            yield slide
        finally:
            self._pool.put(slide)

    def _open_new(self) -> Any:
        from eosin.slide import open_slide

        if self.slide_path is None:
            raise SlideNotFoundError("the store records no slide file.", path=self.stores[0])
        kwargs = {"slide_mpp": self.slide_mpp} if self.slide_mpp else {}
        return open_slide(self.slide_path, **kwargs)


class Catalog:
    """The slides and stores under ``paths`` (slide files, folders of slides, eosin output folders).

    Parameters
    ----------
    paths
        Files and folders to serve; each folder is a root.
    out
        Folder where the viewer writes (annotations); created on the first write.
    """

    def __init__(self, paths: list[str | os.PathLike[str]], *, out: str | os.PathLike[str] | None = None):
        if not paths:
            raise UsageError("give at least one slide, folder of slides or eosin output folder.")
        self.roots: list[Path] = []
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise SlideNotFoundError("no such file or folder.", path=path, fix="check the path")
            self.roots.append(path.resolve())
        if out is None:
            folders = [r for r in self.roots if r.is_dir()]
            out = (folders[0] if folders else Path.cwd()) / "annotations"
        self.out = Path(out).resolve()
        self.entries: dict[str, SlideEntry] = {}
        self._scan()

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, slide_id: str) -> SlideEntry | None:
        return self.entries.get(slide_id)

    def out_dir(self, slide_id: str) -> Path:
        """The folder annotations of one slide are written to (inside ``out``)."""
        return self.out / slide_id

    # ------------------------------------------------------------------ scanning
    def _scan(self) -> None:
        from eosin.slide import SLIDE_SUFFIXES

        slides: list[Path] = []
        stores: list[Path] = []
        for root in self.roots:
            if root.is_file():
                slides.append(root)
                continue
            if root.name == STORE_NAME or (root / "zarr.json").is_file() and root.suffix == ".zarr":
                stores.append(root)
                continue
            for folder, dirs, files in os.walk(root):
                here = Path(folder)
                depth = len(here.relative_to(root).parts)
                keep = []
                for d in sorted(dirs):
                    if d.startswith("."):
                        continue
                    sub = here / d
                    if sub.is_symlink() and not self.inside_roots(sub.resolve()):
                        continue
                    if d.endswith(".zarr") and (sub / "zarr.json").is_file():
                        stores.append(sub)
                    elif depth < _MAX_DEPTH:
                        keep.append(d)
                dirs[:] = keep
                for f in sorted(files):
                    p = here / f
                    if f.startswith(".") or p.suffix.lower() not in SLIDE_SUFFIXES:
                        continue
                    if p.is_symlink() and not self.inside_roots(p.resolve()):
                        continue
                    if depth == 0:  # slides: the root's own files (as eosin's commands take a folder)
                        slides.append(p)
        by_slide: dict[str, tuple[Path | None, list[Path], float | None]] = {}
        for p in slides:
            by_slide.setdefault(str(p.resolve()), (p, [], None))
        for store in stores:
            record = _store_record(store)
            if record is None:
                continue
            raw = record.get("path")
            key = str(Path(raw).resolve()) if raw else f"store:{store}"
            slide_path = Path(raw) if raw else None
            if slide_path is not None and not slide_path.is_absolute():
                slide_path = (Path.cwd() / slide_path).resolve()
            mpp = record.get("mpp_x") if record.get("mpp_source") == "override" else None
            entry = by_slide.setdefault(key, (slide_path, [], None))
            entry[1].append(store)
            if mpp and entry[2] is None:
                by_slide[key] = (entry[0], entry[1], float(mpp))
        used: set[str] = set()
        for _key, (path, store_list, mpp) in sorted(by_slide.items(), key=lambda kv: _name(kv[1])):
            name = path.name if path is not None else store_list[0].parent.name
            sid = _unique(_SLUG.sub("-", Path(name).stem).strip("-") or "slide", used)
            self.entries[sid] = SlideEntry(sid, name, path, store_list, mpp)

    def inside_roots(self, resolved: Path) -> bool:
        return any(resolved == r or r in resolved.parents for r in self.roots)


def _name(item: tuple[Path | None, list[Path], float | None]) -> str:
    path, stores, _ = item
    return path.name.lower() if path is not None else stores[0].parent.name.lower()


def _store_record(store: Path) -> dict[str, Any] | None:
    from eosin.errors import StoreError
    from eosin.io import SlideStore

    try:
        return SlideStore.open(store).slide or {}
    except StoreError:
        return None


def _unique(base: str, used: set[str]) -> str:
    sid, n = base, 2
    while sid in used:
        sid, n = f"{base}-{n}", n + 1
    used.add(sid)
    return sid


def safe_path(root: str | os.PathLike[str], name: str) -> Path:
    """``root / name`` for a file name that came with a request, or :class:`UsageError` when it could leave ``root``.

    Refused: empty names, absolute paths, ``..`` parts, backslashes, NUL bytes, and any path that resolves
    (following links) outside ``root``.
    """
    root = Path(root).resolve()
    if not name or "\x00" in name or "\\" in name:
        raise UsageError(f"refused path {name!r}: not a plain relative file name.")
    rel = Path(name)
    if rel.is_absolute() or name.startswith(("/", "~")):
        raise UsageError(f"refused path {name!r}: absolute paths are not served.")
    if any(part in ("..", "") for part in name.split("/")):
        raise UsageError(f"refused path {name!r}: '..' and empty parts are not allowed.")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise UsageError(f"refused path {name!r}: it leads outside the served folder (a link?).")
    return target
