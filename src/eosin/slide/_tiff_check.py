"""A TIFF's structure checked before any reader sees it: the IFD chain walked with a seen-set.

An IFD chain that loops back makes tifffile (and so tiffslide and the plain-image reader) spin forever; an IFD or
a tile that lies past the end of the file means the file was truncated, and readers then drop the levels after
it or return holes as pixels. Both are :class:`~eosin.errors.CorruptSlideError` here, before decoding, in
milliseconds (only the IFD entries and the tile offset arrays are read).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from eosin.errors import CorruptSlideError

__all__ = ["check_tiff_structure"]

#: more IFDs than any slide has: a chain this long is treated as damaged
_MAX_IFDS = 100_000
_FIX = "the file is damaged or truncated: copy or download it again, or export it anew from the scanner"
# tag -> (offsets tag, byte counts tag)
_DATA_TAGS = ((324, 325), (273, 279))  # TileOffsets/TileByteCounts, StripOffsets/StripByteCounts
_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
_TYPE_CODES = {3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}


def check_tiff_structure(path: str | os.PathLike[str]) -> int:
    """Walk the IFD chain of a TIFF or BigTIFF; return the number of IFDs.

    Raises
    ------
    CorruptSlideError
        The chain loops back to an IFD already seen, an IFD lies past the end of the file, or the pixel data an
        IFD points to runs past the end of the file (a truncated copy).
    """
    path = Path(path)
    if path.suffix.lower() == ".ndpi":
        return 0  # NDPI keeps 32-bit offsets in files over 4 GB (high bits elsewhere): the readers know; skip
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head[:2] not in (b"II", b"MM") or len(head) < 8:
            return 0
        e = "<" if head[:2] == b"II" else ">"
        version = struct.unpack(e + "H", head[2:4])[0]
        if version == 42:
            big, offset = False, struct.unpack(e + "I", head[4:8])[0]
        elif version == 43 and len(head) >= 16:
            big, offset = True, struct.unpack(e + "Q", head[8:16])[0]
        else:
            return 0
        count_fmt, entry_size, next_fmt = (e + "Q", 20, e + "Q") if big else (e + "H", 12, e + "I")
        seen: dict[int, int] = {}
        n = 0
        while offset:
            if offset in seen:
                raise CorruptSlideError(
                    f"its chain of images (IFDs) loops back: IFD {n - 1} points to IFD {seen[offset]} at byte "
                    f"{offset:,}, so the file has no end (readers would loop forever).",
                    path=path,
                    fix=_FIX,
                )
            if offset + 8 > size:
                raise CorruptSlideError(
                    f"truncated: IFD {n} (image {n + 1} of the pyramid) would start at byte {offset:,} but the file "
                    f"has {size:,} bytes; the levels from there on are missing.",
                    path=path,
                    fix=_FIX,
                )
            if n >= _MAX_IFDS:
                raise CorruptSlideError(
                    f"more than {_MAX_IFDS:,} IFDs: the chain is damaged.", path=path, fix=_FIX
                )
            seen[offset] = n
            fh.seek(offset)
            raw = fh.read(8 if big else 2)
            count = struct.unpack(count_fmt, raw)[0]
            entries = fh.read(count * entry_size)
            pointer = fh.read(8 if big else 4)
            if len(entries) < count * entry_size or len(pointer) < (8 if big else 4):
                raise CorruptSlideError(
                    f"truncated: the file ends inside IFD {n} (at byte {offset:,}).", path=path, fix=_FIX
                )
            _check_data_extent(fh, path, n, entries, count, entry_size, e, big, size)
            offset = struct.unpack(next_fmt, pointer)[0]
            n += 1
    return n


def _check_data_extent(fh, path, n, entries, count, entry_size, e, big, size) -> None:
    """Pixel data of IFD ``n`` (tiles or strips) must end inside the file."""
    tags = {}
    for k in range(count):
        entry = entries[k * entry_size : (k + 1) * entry_size]
        tag, typ = struct.unpack(e + "HH", entry[:4])
        if tag in (273, 279, 324, 325):
            cnt = struct.unpack(e + ("Q" if big else "I"), entry[4 : 12 if big else 8])[0]
            tags[tag] = (typ, cnt, entry[12:20] if big else entry[8:12])
    for off_tag, cnt_tag in _DATA_TAGS:
        if off_tag not in tags or cnt_tag not in tags:
            continue
        offsets, counts = _values(fh, e, big, *tags[off_tag]), _values(fh, e, big, *tags[cnt_tag])
        if offsets is None or counts is None or len(offsets) != len(counts) or not len(offsets):
            continue
        ends = offsets + counts
        ends[counts == 0] = 0  # sparse tiles never written
        last = int(ends.max())
        if last > size:
            missing = int(np.count_nonzero(ends > size))
            raise CorruptSlideError(
                f"truncated: {missing:,} of {len(ends):,} {'tiles' if off_tag == 324 else 'strips'} of IFD {n} "
                f"(image {n + 1} of the pyramid) lie past the end of the file ({size:,} bytes, needs {last:,}).",
                path=path,
                fix=_FIX,
            )


def _values(fh, e, big, typ, cnt, inline):
    code = _TYPE_CODES.get(typ)
    if code is None or cnt > 50_000_000:
        return None
    nbytes = cnt * _TYPE_SIZES[typ]
    if nbytes <= len(inline):
        data = inline[:nbytes]
    else:
        pos = struct.unpack(e + ("Q" if big else "I"), inline)[0]
        fh.seek(pos)
        data = fh.read(nbytes)
        if len(data) < nbytes:
            return None  # the offset array itself is cut off; the IFD walk or the reader reports it
    return np.frombuffer(data, dtype=np.dtype(code).newbyteorder(e)).astype(np.int64)
