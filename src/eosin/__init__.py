"""eosin: deep learning on digital pathology.

The top-level namespace is small and lazy: importing :mod:`eosin` loads no image library, no array library and no
model code; each name below is imported on first use.

>>> import eosin
>>> slide = eosin.open_slide("CMU-1-Small-Region.svs")  # doctest: +SKIP
>>> region = slide.read_region((0, 0), (512, 512), mpp=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "open_slide": "eosin.slide",
    "Slide": "eosin.slide",
    "diagnose": "eosin.slide",
    "detect_tissue": "eosin.tissue",
    "TissueMasks": "eosin.tissue",
    "TileGrid": "eosin.tiles",
    "make_grid": "eosin.tiles",
    "iter_tiles": "eosin.tiles",
    "SlideStore": "eosin.io",
    "errors": "eosin.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'eosin' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "errors" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from eosin import errors
    from eosin.io import SlideStore
    from eosin.slide import Slide, diagnose, open_slide
    from eosin.tiles import TileGrid, iter_tiles, make_grid
    from eosin.tissue import TissueMasks, detect_tissue
