"""Deep-zoom tiles of any slide eosin reads, with square display pixels and a byte-bounded LRU cache.

The pyramid is Leaflet's: zoom ``z`` runs from 0 (the whole slide in one 256-px tile) to ``max_zoom`` (one display
pixel per level-0 pixel along the finer axis). A slide whose pixels are not square (``mpp_x != mpp_y``) is shown
with square pixels: the coarser axis is stretched by ``mpp_coarse / mpp_fine`` so that a circle stays round, and
level-0 coordinates (what annotations and layers use) map to display pixels by ``x * ax``, ``y * ay``.

A tile is read with :meth:`eosin.slide.Slide.read_region`, which picks the coarsest pyramid level that is at least
as fine as the tile (the slide's own levels) and resamples from it (area averaging when shrinking). Tiles at the
right and bottom edges are full 256-px tiles whose part outside the slide is white, like glass.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["DeepZoom", "TileCache", "encode_image"]

TILE = 256
FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "png": ".png"}
MEDIA = {".jpg": "image/jpeg", ".webp": "image/webp", ".png": "image/png"}


def encode_image(rgb: np.ndarray, fmt: str = "jpg", *, quality: int = 80) -> bytes:
    """Encode an RGB (or RGBA, for PNG) uint8 image as JPEG, WebP or PNG bytes (OpenCV, libjpeg-turbo/libwebp)."""
    import cv2

    ext = FORMATS.get(fmt.lower())
    if ext is None:
        raise UsageError(f"unknown tile format {fmt!r}; choose jpg, webp or png.")
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        image = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    else:
        image = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params: list[int] = []
    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:  # pragma: no cover - OpenCV built without the codec
        raise UsageError(f"this OpenCV cannot encode {fmt}; use jpg.")
    return buf.tobytes()


class TileCache:
    """A thread-safe LRU cache of encoded tiles bounded by total bytes."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Any, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def get_or_make(self, key: Any, make: Callable[[], bytes]) -> bytes:
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class DeepZoom:
    """The deep-zoom pyramid of one slide.

    Parameters
    ----------
    width, height
        Level-0 size of the slide.
    mpp_x, mpp_y
        Microns per level-0 pixel (``None`` when unknown: pixels are then taken as square and no scale is shown).
    tile_size
        Side of a tile in display pixels.
    """

    width: int
    height: int
    mpp_x: float | None = None
    mpp_y: float | None = None
    tile_size: int = TILE

    @classmethod
    def for_slide(cls, slide: Any, *, tile_size: int = TILE) -> DeepZoom:
        mx, my = slide.mpp_x, slide.mpp_y
        if slide.mpp_problem() is not None:
            mx = my = None
        return cls(slide.width, slide.height, mx, my, tile_size)

    # --------------------------------------------------------------- geometry
    @property
    def aspect(self) -> tuple[float, float]:
        """``(ax, ay)``: display pixels per level-0 pixel along x and y (1 along the finer axis)."""
        if not self.mpp_x or not self.mpp_y:
            return (1.0, 1.0)
        fine = min(self.mpp_x, self.mpp_y)
        return (self.mpp_x / fine, self.mpp_y / fine)

    @property
    def display_size(self) -> tuple[int, int]:
        ax, ay = self.aspect
        return (max(1, math.ceil(self.width * ax - 1e-9)), max(1, math.ceil(self.height * ay - 1e-9)))

    @property
    def display_mpp(self) -> float | None:
        """Microns per display pixel at the deepest zoom."""
        if not self.mpp_x or not self.mpp_y:
            return None
        return min(self.mpp_x, self.mpp_y)

    @property
    def max_zoom(self) -> int:
        side = max(self.display_size)
        return max(0, math.ceil(math.log2(side / self.tile_size) - 1e-12))

    def grid_size(self, z: int) -> tuple[int, int]:
        """Columns and rows of tiles at zoom ``z``."""
        s = self.tile_scale(z)
        w, h = self.display_size
        return (max(1, math.ceil(w / (s * self.tile_size))), max(1, math.ceil(h / (s * self.tile_size))))

    def tile_scale(self, z: int) -> float:
        """Display pixels (at the deepest zoom) per tile pixel at zoom ``z``."""
        return float(2 ** (self.max_zoom - z))

    def tile_region(self, z: int, col: int, row: int) -> tuple[float, float, float, float]:
        """Level-0 ``(x, y, width, height)`` covered by tile ``(z, col, row)`` (it may extend past the slide)."""
        self._check(z, col, row)
        ax, ay = self.aspect
        side = self.tile_size * self.tile_scale(z)
        return (col * side / ax, row * side / ay, side / ax, side / ay)

    def _check(self, z: int, col: int, row: int) -> None:
        if not 0 <= z <= self.max_zoom:
            raise UsageError(f"zoom {z} is outside 0-{self.max_zoom}.")
        cols, rows = self.grid_size(z)
        if not (0 <= col < cols and 0 <= row < rows):
            raise UsageError(f"tile {col},{row} is outside the {cols}x{rows} tiles of zoom {z}.")

    def info(self) -> dict[str, Any]:
        """What the browser needs: sizes, zooms, aspect and the mpp for a scale bar."""
        ax, ay = self.aspect
        return {
            "width": self.width,
            "height": self.height,
            "display_width": self.display_size[0],
            "display_height": self.display_size[1],
            "tile_size": self.tile_size,
            "max_zoom": self.max_zoom,
            "aspect": [ax, ay],
            "mpp_x": self.mpp_x,
            "mpp_y": self.mpp_y,
            "display_mpp": self.display_mpp,
        }

    # --------------------------------------------------------------- pixels
    def read_tile(self, slide: Any, z: int, col: int, row: int) -> np.ndarray:
        """Tile ``(z, col, row)`` as ``(tile_size, tile_size, 3)`` RGB uint8; white past the slide's edges."""
        x, y, w, h = self.tile_region(z, col, row)
        n = self.tile_size
        # only the part of the tile inside the slide is read, at its exact scale; the rest stays white
        inside_w = min(w, self.width - x)
        inside_h = min(h, self.height - y)
        out_w = max(1, min(n, math.ceil(inside_w / w * n - 1e-9)))
        out_h = max(1, min(n, math.ceil(inside_h / h * n - 1e-9)))
        ds_x, ds_y = w / n, h / n  # level-0 pixels per tile pixel
        if abs(ds_x - ds_y) <= 1e-9 * max(ds_x, ds_y):
            part = slide.read_region((x, y), (out_w, out_h), downsample=ds_x)
        else:
            import cv2

            ds = min(ds_x, ds_y)
            read_w = max(1, math.ceil(out_w * ds_x / ds - 1e-9))
            read_h = max(1, math.ceil(out_h * ds_y / ds - 1e-9))
            raw = slide.read_region((x, y), (read_w, read_h), downsample=ds)
            shrinking = read_w >= out_w and read_h >= out_h
            interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            part = cv2.resize(raw, (out_w, out_h), interpolation=interp)
        if part.shape[0] == n and part.shape[1] == n:
            return part
        tile = np.full((n, n, 3), 255, np.uint8)
        tile[: part.shape[0], : part.shape[1]] = part
        return tile
