"""Every tile of every level decoded and checked: what ``eosin info --deep`` and the tile stage run.

Opening a slide and reading a few regions does not reveal a damaged tile elsewhere: libjpeg only *warns* about
corrupt entropy-coded data and fills the tile with garbage. :func:`verify_tiles` decodes each tile strictly
(JPEG through libjpeg-turbo with warnings as errors; other compressions through tifffile) and lists the bad ones
with their level-0 box, so a tile store can flag them and the doctor can report them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BadTile", "verify_tiles"]


@dataclass(frozen=True)
class BadTile:
    """One tile (or strip) that does not decode cleanly.

    ``level`` is the slide level the TIFF page holds (None for an associated image such as the label);
    ``box`` its level-0 ``(x, y, width, height)`` (None for an associated image).
    """

    page: int
    level: int | None
    index: int
    box: tuple[int, int, int, int] | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "level": self.level,
            "index": self.index,
            "box": self.box,
            "reason": self.reason,
        }


def verify_tiles(
    slide: Any,
    *,
    levels: Sequence[int] | None = None,
    boxes: np.ndarray | None = None,
) -> list[BadTile]:
    """Decode the tiles of a TIFF-based slide strictly; return the ones that fail.

    Parameters
    ----------
    slide
        An open :class:`~eosin.slide.Slide` (its file is read again here, read-only).
    levels
        Only these slide levels (default: every level and every associated image).
    boxes
        ``(n, 4)`` level-0 ``x, y, width, height``: only tiles that overlap one of them (default: all).

    Non-TIFF inputs: a plain JPEG or PNG is decoded whole, strictly; other formats (DICOM, MIRAX) are not
    checked here and give an empty list.
    """
    path = Path(slide.path)
    if path.is_dir():
        return []
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:3] == b"\xff\xd8\xff" or head == b"\x89PNG":
        return _verify_plain(path)
    if head not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return []
    import tifffile

    bad: list[BadTile] = []
    sizes = [(lv.width, lv.height) for lv in slide.levels]
    with tifffile.TiffFile(path) as tf:
        fd = os.open(path, os.O_RDONLY)
        try:
            for page_index, page in enumerate(tf.pages):
                level = _level_of(page, sizes)
                if levels is not None and level not in levels:
                    continue
                bad.extend(_verify_page(fd, page_index, page, level, slide, boxes))
        finally:
            os.close(fd)
    return bad


def _level_of(page, sizes: list[tuple[int, int]]) -> int | None:
    shape = (int(page.imagewidth), int(page.imagelength))
    for i, size in enumerate(sizes):
        if size == shape:
            return i
    return None


def _verify_page(fd: int, page_index: int, page, level: int | None, slide, boxes) -> list[BadTile]:
    from eosin.slide._tiff_tiles import decode_jpeg_strict

    offsets = np.asarray(page.dataoffsets, np.int64)
    counts = np.asarray(page.databytecounts, np.int64)
    tiled = bool(page.is_tiled)
    tile_w = int(page.tilewidth) if tiled else int(page.imagewidth)
    tile_h = int(page.tilelength) if tiled else int(page.rowsperstrip or page.imagelength)
    cols = -(-int(page.imagewidth) // tile_w)
    ds = slide.levels[level].downsample if level is not None else None
    jpeg = int(page.compression) == 7 and int(page.bitspersample) == 8 and int(page.samplesperpixel) in (1, 3)
    rgb = int(page.photometric) == 2
    size = os.fstat(fd).st_size
    out = []
    for index, (offset, count) in enumerate(zip(offsets.tolist(), counts.tolist())):
        box = None
        if level is not None:
            row, col = divmod(index, cols)
            box = (round(col * tile_w * ds), round(row * tile_h * ds), round(tile_w * ds), round(tile_h * ds))
            if boxes is not None and not _overlaps(box, boxes):
                continue
        if count == 0:
            continue  # sparse: never written, glass
        reason = None
        if offset + count > size:
            reason = "the file ends inside this tile (truncated)"
        else:
            data = os.pread(fd, count, offset)
            try:
                if jpeg:
                    decode_jpeg_strict(data, page.jpegtables, rgb, verify_only=True)
                else:
                    decoded, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
                    if decoded is None:
                        reason = "it does not decode"
            except Exception as exc:  # noqa: BLE001 - every decoder error means a damaged tile
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        if reason:
            out.append(BadTile(page_index, level, index, box, reason))
    return out


def _overlaps(box: tuple[int, int, int, int], boxes: np.ndarray) -> bool:
    x, y, w, h = box
    b = np.asarray(boxes)
    return bool(
        np.any((b[:, 0] < x + w) & (b[:, 0] + b[:, 2] > x) & (b[:, 1] < y + h) & (b[:, 1] + b[:, 3] > y))
    )


def _verify_plain(path: Path) -> list[BadTile]:
    from eosin._limits import decode_image
    from eosin.errors import EosinError

    try:
        if path.read_bytes()[:3] == b"\xff\xd8\xff":
            import simplejpeg

            simplejpeg.decode_jpeg(path.read_bytes(), colorspace="GRAY", min_factor=8, strict=True)
        else:
            decode_image(path)
    except (ValueError, EosinError) as exc:
        reason = getattr(exc, "message", None) or " ".join(str(exc).split())[:160]
        return [BadTile(0, 0, 0, None, reason)]
    return []
