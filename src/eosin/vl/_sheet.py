"""Contact sheets: the tiles a search found, in rank order, each captioned with its rank, score and source."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["contact_sheet", "hit_tile"]


def hit_tile(hit: dict[str, Any]) -> np.ndarray:
    """The pixels of one search hit: the tile's region of its slide (level 0) or its image file."""
    from eosin.vl._sources import read_image

    if hit.get("store"):
        from eosin.io import SlideStore
        from eosin.slide import open_slide

        record = SlideStore.open(hit["store"]).slide or {}
        slide_mpp = record.get("mpp_x") if record.get("mpp_source") == "override" else None
        with open_slide(hit["slide"], slide_mpp=slide_mpp) as slide:
            side = int(hit["size"])
            down = max(side / 256.0, 1.0)
            return slide.read_region(
                (int(hit["x"]), int(hit["y"])), (int(side / down), int(side / down)), downsample=down
            )
    return read_image(hit["slide"])


def contact_sheet(
    hits: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    cell: int = 160,
    columns: int = 5,
) -> Path:
    """Write the hits' tiles as a grid PNG (rank order, left to right), captioned ``#rank score label``."""
    import cv2

    from eosin.viz import save_png

    rows = max(1, -(-len(hits) // columns))
    cap = 34
    head = 30 if title else 0
    sheet = np.full((head + rows * (cell + cap), columns * cell, 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, title[:90], (6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, hit in enumerate(hits):
        r, c = divmod(i, columns)
        tile = cv2.resize(hit_tile(hit), (cell - 6, cell - 6), interpolation=cv2.INTER_AREA)
        y0, x0 = head + r * (cell + cap), c * cell
        sheet[y0 + 3 : y0 + cell - 3, x0 + 3 : x0 + cell - 3] = tile
        line1 = f"#{hit['rank']}  {hit['score']:.3f}  {hit.get('label') or ''}"
        line2 = Path(str(hit.get("slide", ""))).name[:22]
        if hit.get("store"):
            line2 = f"{line2[:12]} x{hit['x']} y{hit['y']}"
        cv2.putText(
            sheet, line1, (x0 + 4, y0 + cell + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA
        )
        cv2.putText(
            sheet,
            line2,
            (x0 + 4, y0 + cell + 28),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.36,
            (70, 70, 70),
            1,
            cv2.LINE_AA,
        )
    return save_png(path, sheet)
