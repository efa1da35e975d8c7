"""Reading slides: one :class:`Slide` type over OpenSlide, tiffslide, DICOM and plain-image backends, and the slide
doctor.

Importing this package loads no slide library; a backend is imported when a slide is opened with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eosin._lazy import lazy_getattr

__all__ = [
    "SLIDE_SUFFIXES",
    "BadTile",
    "Level",
    "Slide",
    "SlideMpp",
    "diagnose",
    "diagnose_path",
    "list_backends",
    "open_slide",
    "special_file",
    "unreadable_record",
    "verify_tiles",
]

_LAZY = {
    "open_slide": "eosin.slide._open",
    "SLIDE_SUFFIXES": "eosin.slide._suffixes",
    "list_backends": "eosin.slide._open",
    "special_file": "eosin.slide._open",
    "Slide": "eosin.slide._base",
    "Level": "eosin.slide._base",
    "SlideMpp": "eosin.slide._mpp",
    "diagnose": "eosin.slide._doctor",
    "diagnose_path": "eosin.slide._doctor",
    "unreadable_record": "eosin.slide._doctor",
    "verify_tiles": "eosin.slide._verify",
    "BadTile": "eosin.slide._verify",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.slide._base import Level, Slide
    from eosin.slide._doctor import diagnose, diagnose_path, unreadable_record
    from eosin.slide._mpp import SlideMpp
    from eosin.slide._open import list_backends, open_slide, special_file
    from eosin.slide._suffixes import SLIDE_SUFFIXES
    from eosin.slide._verify import BadTile, verify_tiles
