"""A web viewer for slides and everything eosin computed on them (``eosin view``), with QuPath-compatible
annotation.

``serve(paths)`` starts it; ``create_app(Catalog(paths))`` gives the FastAPI app for other servers and tests;
``DeepZoom`` is the tile pyramid of one slide. FastAPI, uvicorn and the JavaScript library (Leaflet, through the
XStatic-Leaflet package) load only when the viewer starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eosin._lazy import lazy_getattr

__all__ = [
    "Catalog",
    "DeepZoom",
    "SlideEntry",
    "TileCache",
    "create_app",
    "find_layers",
    "safe_path",
    "serve",
]

_LAZY = {
    "Catalog": "_catalog",
    "SlideEntry": "_catalog",
    "safe_path": "_catalog",
    "DeepZoom": "_tiles",
    "TileCache": "_tiles",
    "create_app": "_app",
    "find_layers": "_layers",
    "serve": "_serve",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.viewer._app import create_app
    from eosin.viewer._catalog import Catalog, SlideEntry, safe_path
    from eosin.viewer._layers import find_layers
    from eosin.viewer._serve import serve
    from eosin.viewer._tiles import DeepZoom, TileCache
