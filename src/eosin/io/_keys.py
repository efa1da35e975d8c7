"""Store keys: the one digest of parameters every group key and resume fingerprint is built from, and the one
picker that finds a stored group from a full key, a readable prefix of one, or nothing (the only group).

Key strings are an internal detail of the store (docs/format.md); user code reads groups through the typed
accessors of :class:`~eosin.io.SlideStore` (``store.grid()``, ``store.features("uni2")``...), which use
:func:`pick_key`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any

from eosin.errors import StoreError

__all__ = ["param_digest", "pick_key"]

#: the command that writes each kind of group, for "run ... first"
_MAKERS = {
    "tissue": "eosin tissue",
    "grids": "eosin tile",
    "features": "eosin embed {store} --encoder {key}",
    "predictions": "eosin predict {store} --model CHECKPOINT",
    "segmentation": "eosin segment",
    "qc": "eosin qc",
    "annotations": "eosin import geojson",
    "attention": "eosin train mil (an attention model)",
}
#: what a key names, for "the store holds no ..."
_WHAT = {"features": "features of encoder", "predictions": "tile predictions of model"}


def param_digest(obj: Any, n: int | None = 6, *, sort_keys: bool = True) -> str:
    """Hex SHA-1 of ``obj`` as canonical JSON (keys sorted, values JSON cannot hold written with ``str``).

    The digest part of every store key (``mpp0.5_224px_o0_t0.5_3f9a1c``) and the fingerprint of resumable
    groups (``n=None``: all 40 digits). ``sort_keys=False`` keeps the key order as given: only for keys first
    written that way (segmentation groups), so that stores written before still match.

    >>> param_digest({"mpp": 0.5, "tile_size": 224})
    'f22d69'
    """
    text = json.dumps(obj, sort_keys=sort_keys, default=str)
    digest = hashlib.sha1(text.encode()).hexdigest()
    return digest if n is None else digest[:n]


def pick_key(store: Any, kind: str, key: str | None = None, *, grid: str | None = None) -> str:
    """The key of one stored ``kind`` group, or :class:`~eosin.errors.StoreError` naming the store, the kind,
    the keys it holds and the fix.

    ``key`` is a full key, or a readable prefix of one that ends at a ``_`` or ``-`` (``mpp0.5_224px`` picks
    ``mpp0.5_224px_o0_t0.5_3f9a1c``: the digest also covers the slide's own mpp, so one full key does not fit
    every store); for ``features`` an encoder name picks its ``<encoder>--<grid>`` groups. ``None`` picks the
    only group of the kind. ``grid`` keeps the groups whose key contains that grid key (or prefix).
    """
    keys = store.keys(kind) if kind in store.kinds() else []
    make = _MAKERS.get(kind, f"the stage that writes {kind}").format(
        store=store.path, key=key.split("--")[0] if key else "NAME"
    )
    wanted = f"{_WHAT.get(kind, kind + ' group')} {key!r}" if key is not None else kind
    wanted += f" on grid {grid!r}" if grid is not None else ""
    if not keys:
        what = f"{wanted} (it holds no {kind} at all)" if key is not None or grid is not None else kind
        raise StoreError(f"the store holds no {what}.", path=store.path, fix=f"run {make} first")
    if key is None:
        found = list(keys)
    elif key in keys:
        found = [key]
    else:
        # an encoder name picks its own groups first (not those of an encoder whose name begins alike)
        found = [k for k in keys if k.startswith(key + "--")] if kind == "features" else []
        found = found or [k for k in keys if k.startswith(key) and k[len(key) : len(key) + 1] in ("_", "-")]
    if grid is not None:
        found = [k for k in found if grid in k]
    if len(found) == 1:
        return found[0]
    if not found:
        close = difflib.get_close_matches(key or grid or "", keys, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise StoreError(
            f"the store holds no {wanted} (it has {kind}: {', '.join(keys)}).{hint}",
            path=store.path,
            fix=f"pick one of those (a prefix that picks one will do), or run {make} to make it",
        )
    if key is None and grid is None:
        message = f"the store holds {len(found)} {kind}: {', '.join(found)}."
    else:
        asked = " on ".join(v for v in (key and repr(key), grid and f"grid {grid!r}") if v)
        message = f"{len(found)} {kind} match {asked}: {', '.join(found)}."
    fix = "choose one by its key, or give more of it (a longer prefix that picks one)"
    raise StoreError(message, path=store.path, fix=fix)
