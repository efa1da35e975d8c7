"""Turning a backend's failure while decoding pixels into one typed, actionable error."""

from __future__ import annotations

from pathlib import Path

from eosin.errors import CorruptSlideError

__all__ = ["read_error"]


def read_error(
    path: Path, exc: BaseException, level: int, x: int, y: int, width: int, height: int
) -> CorruptSlideError:
    """The :class:`CorruptSlideError` for a region that could not be decoded (truncated file, bad tile bytes)."""
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return CorruptSlideError(
        f"cannot decode the region x={x}, y={y}, {width}x{height} of level {level} ({detail}).",
        path=path,
        fix="the file is probably truncated or damaged: copy or download it again, or export it anew from the scanner",
    )
