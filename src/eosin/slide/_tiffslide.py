"""The tiffslide backend: TIFFs OpenSlide cannot read (plain strip TIFFs, OME-TIFF, Akoya/PerkinElmer QPTIFF).

A multichannel fluorescence QPTIFF opens with its marker names in ``channel_names``; :meth:`read_region` returns a
false-colour RGB composite (each channel added in the display colour the scanner recorded, DAPI blue...) so every
RGB-based step runs on it, and the slide doctor flags it ``fluorescence``. Each channel is stretched once per
slide (its 1st-99.5th percentiles on the coarsest level map to black-full brightness), so tiles of one slide agree. The raw channels are available from
:meth:`TiffSlideSlide.read_channels`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from eosin.slide._base import Level, Slide, _LazyImages
from eosin.slide._pixels import as_rgb, read_error

__all__ = ["TiffSlideSlide"]

#: display colours for common markers when the file does not record one
_DEFAULT_COLOURS = [
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 128, 0),
]


class TiffSlideSlide(Slide):
    """A TIFF-based slide read by tiffslide. Build with :meth:`open`."""

    _handle = None
    _colours: np.ndarray | None = None
    _offsets: np.ndarray | None = None

    @classmethod
    def open(cls, path: Path) -> TiffSlideSlide:
        import logging

        import tiffslide

        # tifffile logs damaged page offsets itself; the caller gets them as one typed error instead
        logging.getLogger("tifffile").setLevel(logging.CRITICAL)
        handle = tiffslide.TiffSlide(str(path))
        props = {k: "" if v is None else str(v) for k, v in handle.properties.items()}
        levels = [
            Level(int(w), int(h), float(d))
            for (w, h), d in zip(handle.level_dimensions, handle.level_downsamples)
        ]
        tf = handle.ts_tifffile
        series = tf.series[handle.properties.get("tiffslide.series-index") or 0]
        axes = series.axes
        _check_strips(path, series)
        fmt = (
            "qptiff"
            if tf.is_qpi
            else "ome-tiff"
            if tf.is_ome
            else (handle.properties.get("tiffslide.vendor") or "tiff")
        )
        channel_names: tuple[str, ...] = ("R", "G", "B")
        colours = None
        objective = _float(handle.properties.get("tiffslide.objective-power"))
        if "C" in axes and "S" not in axes:  # one grey plane per channel: fluorescence / multiplex
            n = series.shape[axes.index("C")]
            pages = series.levels[0].pages
            descriptions = [getattr(p, "description", "") or "" for p in pages[:n]]
            channel_names = tuple(_xml_tag(d, "Name") or f"channel {i}" for i, d in enumerate(descriptions))
            colours = np.array(
                [
                    _parse_colour(_xml_tag(d, "Color")) or _DEFAULT_COLOURS[i % 7]
                    for i, d in enumerate(descriptions)
                ],
                np.float32,
            )
            if objective is None and descriptions:
                m = re.search(
                    r"<ScanResolution.*?<Magnification>([\d.]+)</Magnification>", descriptions[0], re.DOTALL
                )
                objective = _float(m.group(1)) if m else None
        mpp_x = _float(handle.properties.get("tiffslide.mpp-x"))
        mpp_y = _float(handle.properties.get("tiffslide.mpp-y"))
        names = list(handle.associated_images.keys())
        slide = cls(
            path=path,
            format=fmt,
            backend="tiffslide",
            levels=levels,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source="slide" if mpp_x is not None and mpp_y is not None else None,
            objective_power=objective,
            channel_names=channel_names,
            properties=props,
            associated_images=_LazyImages(
                {n: (lambda n=n: as_rgb(np.asarray(handle.associated_images[n]))) for n in names}
            ),
        )
        slide._handle = handle
        if colours is not None:
            coarse = slide.read_channels(len(levels) - 1, 0, 0, levels[-1].width, levels[-1].height)
            low, top = np.percentile(coarse.reshape(-1, coarse.shape[-1]), [1.0, 99.5], axis=0).astype(
                np.float32
            )
            slide._offsets = low
            slide._colours = colours / np.maximum(top - low, 1.0)[:, None]
        return slide

    def read_channels(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """The raw ``(rows, columns, channels)`` samples of a region (``x``, ``y`` in level-0 pixels)."""
        try:
            arr = self._handle.read_region((x, y), level, (width, height), as_array=True)
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
            raise read_error(self.path, exc, level, x, y, width, height) from None
        return arr if arr.ndim == 3 else arr[..., None]

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        arr = self.read_channels(level, x, y, width, height)
        if self._colours is None:
            return as_rgb(arr)
        # false colour: each channel minus its offset, times its gain and display colour, added and clipped
        composite = (arr.reshape(-1, arr.shape[-1]).astype(np.float32) - self._offsets) @ self._colours
        return np.clip(composite, 0, 255).astype(np.uint8).reshape(arr.shape[0], arr.shape[1], 3)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _check_strips(path: Path, series) -> None:
    """Refuse a level stored in strips larger than ``EOSIN_MAX_IMAGE_PIXELS`` (one strip is decoded whole)."""
    from eosin._limits import check_image_pixels

    for level in series.levels:
        page = level.pages[0] if level.pages else None
        if page is None or getattr(page, "is_tiled", True):
            continue
        rows = min(int(getattr(page, "rowsperstrip", 0) or page.imagelength), int(page.imagelength))
        if rows * int(page.imagewidth) > 0:
            try:
                check_image_pixels(path, page.imagewidth, rows)
            except Exception as exc:
                exc.message = exc.message.replace("declares", "declares strips of", 1)
                raise


def _xml_tag(text: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    return m.group(1).strip() if m else None


def _parse_colour(text: str | None) -> tuple[int, int, int] | None:
    try:
        r, g, b = (int(v) for v in (text or "").split(","))
    except ValueError:
        return None
    return (r, g, b)


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
