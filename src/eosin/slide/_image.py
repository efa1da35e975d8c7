"""The plain-image backend: PNG, JPEG and other single-resolution images (Pillow), TIFFs as a last resort (tifffile).

One level; the pixels are decoded on the first read and kept. The resolution comes from the TIFF resolution tags
or the JPEG/PNG density only when it is a plausible scan resolution: most photos and exports record 72 or 96 dpi,
which would claim ~265 µm/px. Such a value is not used (``mpp_x = None``) and ``mpp_source`` is ``"ignored"``,
with the value kept in ``properties["eosin.ignored-mpp"]`` for the slide doctor.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from eosin._limits import check_image_pixels, decode_image, open_image
from eosin.errors import EosinError
from eosin.slide._base import PLAUSIBLE_MPP, Level, Slide
from eosin.slide._pixels import as_rgb, read_error

__all__ = ["ImageSlide"]

_MICRONS_PER_UNIT = {"inch": 25400.0, "cm": 10000.0}


class ImageSlide(Slide):
    """A plain image seen as a one-level slide. Build with :meth:`open`."""

    _pixels: np.ndarray | None = None
    _lock = None

    @classmethod
    def open(cls, path: Path) -> ImageSlide:
        with open(path, "rb") as fh:
            is_tiff = fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
        if is_tiff:
            width, height, fmt, mpp, props = _tiff_header(path)
        else:
            width, height, fmt, mpp, props = _pillow_header(path)
        mpp_source = None
        if mpp is not None:
            lo, hi = PLAUSIBLE_MPP
            if lo <= mpp[0] <= hi and lo <= mpp[1] <= hi:
                mpp_source = "slide"
            else:
                props["eosin.ignored-mpp"] = (
                    f"{mpp[0]:.6g} x {mpp[1]:.6g} µm/px (from the file's resolution tags)"
                )
                mpp, mpp_source = None, "ignored"
        slide = cls(
            path=path,
            format=fmt,
            backend="image",
            levels=[Level(width, height, 1.0)],
            mpp_x=mpp[0] if mpp else None,
            mpp_y=mpp[1] if mpp else None,
            mpp_source=mpp_source,
            properties=props,
        )
        slide._is_tiff, slide._lock = is_tiff, threading.Lock()
        return slide

    def _decode(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                if self._is_tiff:
                    import tifffile

                    arr = tifffile.imread(self.path, key=0)
                else:
                    arr = decode_image(self.path)  # size checked, truncation refused
                self._pixels = as_rgb(arr)
        return self._pixels

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        try:
            pixels = self._decode()
        except EosinError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
            raise read_error(self.path, exc, level, x, y, width, height) from None
        return pixels[y : y + height, x : x + width]

    def close(self) -> None:
        self._pixels = None


def _pillow_header(path: Path):
    with open_image(path) as im:  # refuses a declared size above EOSIN_MAX_IMAGE_PIXELS
        width, height = im.size
        fmt = (im.format or "image").lower()
        info = dict(im.info)
    props = {k: str(v) for k, v in info.items() if isinstance(v, (str, int, float, tuple))}
    mpp = None
    if info.get("jfif_unit") in (1, 2) and info.get("jfif_density"):
        per_unit = 25400.0 if info["jfif_unit"] == 1 else 10000.0
        mpp = _from_density(info["jfif_density"], per_unit)
    elif "dpi" in info and fmt != "jpeg":
        mpp = _from_density(info["dpi"], 25400.0)
    return width, height, fmt, mpp, props


def _tiff_header(path: Path):
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        width, height = page.imagewidth, page.imagelength
        check_image_pixels(path, width, height)  # this reader decodes the whole page
        tags = page.tags
        unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
        unit_name = {2: "inch", 3: "cm"}.get(int(unit))
        mpp = None
        if unit_name and "XResolution" in tags and "YResolution" in tags:
            xr, yr = (tags[k].value for k in ("XResolution", "YResolution"))
            mpp = _from_density(
                (xr[0] / xr[1] if xr[1] else 0, yr[0] / yr[1] if yr[1] else 0), _MICRONS_PER_UNIT[unit_name]
            )
        props = {"tiff.Software": str(tags["Software"].value)} if "Software" in tags else {}
    return int(width), int(height), "tiff", mpp, props


def _from_density(density, microns_per_unit: float) -> tuple[float, float] | None:
    try:
        dx, dy = float(density[0]), float(density[1])
    except (TypeError, ValueError, IndexError):
        return None
    if dx <= 0 or dy <= 0:
        return None
    return (microns_per_unit / dx, microns_per_unit / dy)
