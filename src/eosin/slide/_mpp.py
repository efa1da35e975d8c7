"""Resolution overrides for many slides: one value for the slides that lack a plausible mpp, or one per slide."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from eosin.errors import UsageError

__all__ = ["SlideMpp"]


@dataclass(frozen=True)
class SlideMpp:
    """Which level-0 microns per pixel to use for which slide; give it wherever ``slide_mpp=`` is accepted.

    Parameters
    ----------
    per_slide
        Values for named slides (a file name such as ``a.svs``, its stem ``a``, or the path as given). A named
        slide always takes its value: the user stated it for that slide.
    default
        A value for the other slides, used only where the slide records no plausible mpp (missing, or outside
        the range of real scans), unless ``force``.
    force
        Apply ``default`` to every slide not named in ``per_slide``, even one that records a plausible mpp.

    Examples
    --------
    >>> open_slide("CMU-1-Small-Region.svs", slide_mpp=SlideMpp(default=0.25)).mpp  # doctest: +SKIP
    (0.499, 0.499)
    >>> SlideMpp.from_csv("mpp.csv")  # columns slide, mpp  # doctest: +SKIP
    """

    per_slide: Mapping[str, float] = field(default_factory=dict)
    default: float | None = None
    force: bool = False

    def __post_init__(self) -> None:
        for name, value in [*self.per_slide.items(), ("default", self.default)]:
            if value is not None and not (
                isinstance(value, (int, float)) and value > 0 and math.isfinite(value)
            ):
                raise UsageError(
                    f"slide mpp for {name!r} must be a positive number of microns per pixel, got {value!r}."
                )

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> SlideMpp:
        """Per-slide values from a CSV file with the columns ``slide`` (file name, stem or path) and ``mpp``."""
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the slide mpp table ({exc}).", path=path) from None
        columns = set(rows[0]) if rows else set()
        if not {"slide", "mpp"} <= columns:
            raise UsageError(
                f"the slide mpp table needs the columns slide and mpp; it has {', '.join(sorted(columns)) or 'none'}.",
                path=path,
                fix="write a header line 'slide,mpp' and one row per slide (file name or stem, microns per pixel)",
            )
        values: dict[str, float] = {}
        for number, row in enumerate(rows, start=2):
            name = (row["slide"] or "").strip()
            try:
                value = float(row["mpp"])
            except (TypeError, ValueError):
                value = float("nan")
            if not name or not (value > 0 and math.isfinite(value)):
                raise UsageError(
                    f"line {number}: slide {name!r}, mpp {row['mpp']!r} is not a slide and a positive mpp.",
                    path=path,
                )
            if name in values and values[name] != value:
                raise UsageError(
                    f"line {number}: slide {name!r} is listed twice with different mpp.", path=path
                )
            values[name] = value
        return cls(per_slide=values)

    def for_slide(self, path: str | os.PathLike[str]) -> float | None:
        """The value stated for this slide by name (path as given, file name, then stem), or ``None``."""
        p = Path(path)
        for name in (str(path), p.name, p.stem, str(p.resolve())):
            if name in self.per_slide:
                return float(self.per_slide[name])
        return None

    def resolve(self, path: str | os.PathLike[str], problem: str | None) -> float | None:
        """The override for the slide at ``path`` whose own mpp has ``problem`` (``None`` when plausible)."""
        named = self.for_slide(path)
        if named is not None:
            return named
        if self.default is not None and (self.force or problem is not None):
            return float(self.default)
        return None
