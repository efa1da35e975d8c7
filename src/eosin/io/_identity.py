"""Which slide a store belongs to: a slide's identity is its content, not its file name.

:func:`slide_identity` reads the file's size and a SHA-256 of its first and last MiB (a folder slide, such as a
DICOM series: the sorted list of its files with their sizes, and the first and last MiB of its largest file).
Reading 2 MiB costs milliseconds, so it runs every time a stage opens a store; a store records the identity of
its slide (root attribute ``source``) and refuses another slide with :class:`~eosin.errors.StoreError`.
A byte-identical copy elsewhere has the same identity (its results would be the same) and is accepted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eosin.errors import StoreError

__all__ = ["check_identity", "slide_identity"]

_MIB = 1 << 20


def slide_identity(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"path", "size", "fingerprint"}`` of a slide file or folder; ``None`` when it cannot be read."""
    path = Path(path)
    try:
        resolved = path.resolve()
        if resolved.is_dir():
            files = sorted((p for p in resolved.rglob("*") if p.is_file()), key=lambda p: str(p))
            listing = [(str(p.relative_to(resolved)), p.stat().st_size) for p in files]
            digest = hashlib.sha256(repr(listing).encode())
            size = sum(s for _, s in listing)
            if files:
                _head_tail(max(files, key=lambda p: p.stat().st_size), digest)
        else:
            size = resolved.stat().st_size
            digest = hashlib.sha256(str(size).encode())
            _head_tail(resolved, digest)
    except OSError:
        return None
    return {"path": str(resolved), "size": int(size), "fingerprint": "sha256:" + digest.hexdigest()[:32]}


def _head_tail(path: Path, digest: Any) -> None:
    with open(path, "rb") as handle:
        digest.update(handle.read(_MIB))
        size = os.fstat(handle.fileno()).st_size
        if size > _MIB:
            handle.seek(max(_MIB, size - _MIB))
            digest.update(handle.read(_MIB))


def same_slide(stored: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    return stored.get("size") == found.get("size") and stored.get("fingerprint") == found.get("fingerprint")


def check_identity(stored: Mapping[str, Any] | None, found: Mapping[str, Any] | None, store: Path) -> None:
    """Raise :class:`~eosin.errors.StoreError` when the store ``store`` was made for another slide."""
    if not stored or not found or same_slide(stored, found):
        return
    if stored.get("path") == found.get("path"):
        what = (
            f"{found['path']} changed since this store was made from it (then {stored.get('size')} bytes, "
            f"fingerprint {stored.get('fingerprint')}; now {found['size']} bytes, {found['fingerprint']})."
        )
        fix = f"delete {store} to start afresh from the new file, or give another --out"
    else:
        what = (
            f"this store belongs to {stored.get('path')} ({stored.get('size')} bytes, fingerprint "
            f"{stored.get('fingerprint')}), not to {found['path']} ({found['size']} bytes, "
            f"{found['fingerprint']}): another slide with the same output name."
        )
        fix = (
            "give each slide its own --out folder, or pass both slides in one command (equal names then get "
            f"distinct folders), or delete {store} if {stored.get('path')} is gone"
        )
    raise StoreError(what, path=store, fix=fix)
