"""The OpenSlide backend (openslide-python over openslide-bin): Aperio, Hamamatsu, MIRAX, Leica, generic TIFF..."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eosin.slide._base import BACKGROUND, Level, Slide, _LazyImages
from eosin.slide._pixels import read_error

__all__ = ["OpenSlideSlide"]

#: OpenSlide vendors whose levels are plain tiled TIFF pages (the fast path applies; checked level by level)
_TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})


class OpenSlideSlide(Slide):
    """A slide read by OpenSlide. Build with :meth:`open`."""

    _handle = None
    #: tiled-TIFF fast path (eosin.slide._tiff_tiles) for the levels it can serve, else None
    _tiles = None

    @classmethod
    def open(cls, path: Path) -> OpenSlideSlide:
        import openslide

        handle = openslide.OpenSlide(str(path))
        props = dict(handle.properties)
        levels = [
            Level(int(w), int(h), float(d))
            for (w, h), d in zip(handle.level_dimensions, handle.level_downsamples)
        ]
        mpp_x, mpp_y = (
            _float(props.get(openslide.PROPERTY_NAME_MPP_X)),
            _float(props.get(openslide.PROPERTY_NAME_MPP_Y)),
        )
        bounds = None
        if openslide.PROPERTY_NAME_BOUNDS_WIDTH in props:
            bounds = tuple(int(props[f"openslide.bounds-{k}"]) for k in ("x", "y", "width", "height"))  # type: ignore[assignment]
        names = list(handle.associated_images.keys())
        slide = cls(
            path=path,
            format=props.get(openslide.PROPERTY_NAME_VENDOR) or "unknown",
            backend="openslide",
            levels=levels,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source="slide" if mpp_x is not None and mpp_y is not None else None,
            objective_power=_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
            bounds=bounds,
            properties=props,
            associated_images=_LazyImages({n: (lambda n=n: _associated(handle, n)) for n in names}),
        )
        slide._handle = handle
        if props.get(openslide.PROPERTY_NAME_VENDOR) in _TIFF_VENDORS:
            from eosin.slide._tiff_tiles import TiffTiles

            slide._tiles = TiffTiles.open(Path(path), [(lv.width, lv.height) for lv in levels])
        return slide

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        if self._tiles is not None and self._tiles.has(level):
            lv_ds = self.levels[level].downsample
            try:
                return self._tiles.read(level, round(x / lv_ds), round(y / lv_ds), width, height)
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
                raise read_error(self.path, exc, level, x, y, width, height) from None
        try:
            rgba = np.asarray(self._handle.read_region((x, y), level, (width, height)))
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
            raise read_error(self.path, exc, level, x, y, width, height) from None
        return _composite(rgba)

    def close(self) -> None:
        if self._tiles is not None:
            self._tiles.close()
            self._tiles = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _composite(rgba: np.ndarray) -> np.ndarray:
    """RGBA (transparent outside the scanned area) onto white glass, as RGB."""
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.uint16)
    return ((rgb.astype(np.uint16) * a + BACKGROUND * (255 - a) + 127) // 255).astype(np.uint8)


def _associated(handle, name: str) -> np.ndarray:
    return _composite(np.asarray(handle.associated_images[name].convert("RGBA")))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
