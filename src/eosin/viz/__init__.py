"""Pictures for people: mask overlays and tile grids over thumbnails, written atomically as PNG."""

from __future__ import annotations

from eosin._lazy import lazy_getattr

__all__ = ["draw_grid", "overlay", "save_png"]

_WHERE = {"overlay": "_overlay", "draw_grid": "_grid", "save_png": "_png"}


__getattr__ = lazy_getattr(__name__, _WHERE)
