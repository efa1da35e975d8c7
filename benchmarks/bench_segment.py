"""``segment-wsi``: blended U-Net segmentation of the big slide's tissue at 1 µm/px against a naive tile loop.

``python benchmarks/run.py segment-wsi``

- both sides: the big slide (40,000 x 30,000 px at 0.25 µm/px), tissue detected once (not timed), the same randomly
  initialised U-Net (resnet18 encoder, 2 classes; speed does not depend on the weights), 512-px windows at
  1 µm/px over tissue (``min_tissue`` 0.01), tiles decoded by ``iter_tiles`` worker processes, batch 4, CPU,
  the Segmenter's default precision (``auto``: bf16 autocast on CPUs with native bfloat16, else fp32).
- eosin: :func:`eosin.segment.segment_slide`: windows overlapping by ``EOSIN_BENCH_OVERLAP`` px (default 32),
  raised-cosine blending in a one-window-high band, the probability map streamed into the slide store.
- baseline: the same model on non-overlapping tiles, outputs pasted into one in-memory map, no blending, no store.
- ``ratio`` = eosin seconds / baseline seconds (target <= 1.3); targets: < 600 s, peak RSS < 2 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import _common

BENCHES = ("segment-wsi",)
MPP, TILE, BATCH = 1.0, 512, 4


def _setup():
    import torch

    from eosin.segment import SegConfig, Segmenter, build_unet
    from eosin.slide import open_slide
    from eosin.tissue import detect_tissue

    torch.manual_seed(0)
    model = Segmenter(build_unet(encoder="resnet18", n_classes=2), SegConfig(mpp=MPP), device="cpu")
    slide = open_slide(_common.big_slide())
    return slide, detect_tissue(slide), model


def eosin_side(overlap: int) -> dict:
    from eosin.io import SlideStore
    from eosin.segment import segment_slide

    slide, masks, model = _setup()
    work = _common.WORK / "segment"
    shutil.rmtree(work, ignore_errors=True)
    store = SlideStore.create(work / "store.zarr")
    t0 = time.perf_counter()
    key = segment_slide(
        slide, model, store, mpp=MPP, tile_size=TILE, overlap=overlap, masks=masks, batch_size=BATCH
    )
    seconds = time.perf_counter() - t0
    group = store.read_group("segmentation", key)
    return {
        "seconds": seconds,
        "n_windows": group.attrs["n_windows"],
        "shape": group.attrs["shape"],
        "precision": model.precision,
    }


def naive_side() -> dict:
    import math

    import numpy as np

    from eosin.tiles import iter_tiles, make_grid

    slide, masks, model = _setup()
    t0 = time.perf_counter()
    grid = make_grid(slide, masks, mpp=MPP, tile_size=TILE, overlap=0, min_tissue=0.01)
    bx, by, bw, bh = slide.bounds
    ds = grid.downsample
    out = np.zeros((math.ceil(bh / ds) + TILE, math.ceil(bw / ds) + TILE), np.uint8)
    for batch in iter_tiles(slide, grid, batch_size=BATCH):
        fg = 1 - model.predict(batch.images)[:, 0]
        for (x, y), p in zip(batch.coords, fg):
            r, c = round((y - by) / ds), round((x - bx) / ds)
            out[r : r + TILE, c : c + TILE] = (p * 255).astype(np.uint8)
    return {"seconds": time.perf_counter() - t0, "n_windows": len(grid)}


def run(names: list[str]) -> list[dict]:
    _common.big_slide()
    overlap = int(os.environ.get("EOSIN_BENCH_OVERLAP", "32"))
    e, rss = _common.run_measured([sys.executable, __file__, "eosin", str(overlap)])
    b, b_rss = _common.run_measured([sys.executable, __file__, "naive"])
    return [
        {
            "bench": "segment-wsi",
            "unit": "s",
            "eosin": round(e["seconds"], 1),
            "baseline": f"naive loop: same U-Net on non-overlapping {TILE}-px tiles at {MPP} µm/px, pasted, no blending",
            "baseline_value": round(b["seconds"], 1),
            "ratio": round(e["seconds"] / b["seconds"], 3),
            "peak_rss_mb": round(rss, 1),
            "baseline_peak_rss_mb": round(b_rss, 1),
            "overlap_px": overlap,
            "n_windows": e["n_windows"],
            "baseline_n_tiles": b["n_windows"],
            "map_shape": e["shape"],
            "precision": e["precision"],
        }
    ]


if __name__ == "__main__":
    if sys.argv[1] == "eosin":
        print(json.dumps(eosin_side(int(sys.argv[2]))))
    elif sys.argv[1] == "naive":
        print(json.dumps(naive_side()))
    else:
        for record in run(sys.argv[1:]):
            print(json.dumps(record))
