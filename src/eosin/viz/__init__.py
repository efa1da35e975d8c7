"""Pictures for people: mask overlays and tile grids over thumbnails, written atomically as PNG."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["draw_grid", "overlay", "save_png"]

_WHERE = {"overlay": "_overlay", "draw_grid": "_grid", "save_png": "_png"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"eosin.viz.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'eosin.viz' has no attribute {name!r}")
