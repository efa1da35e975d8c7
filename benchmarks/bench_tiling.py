"""Tissue detection + grid + tile streaming on the big slide, against a plain OpenSlide read_region loop.

``python benchmarks/run.py tiling`` (prints all three)

- ``tiling``: eosin opens the slide, detects tissue, builds the grid (mpp 0.5, 256 px, min tissue 0.5) and reads and
  decodes every tile through :func:`eosin.tiles.iter_tiles` with its default ``workers=None`` (it times the first
  batch and starts worker processes only when decoding is dear; the record says which it chose and also gives the
  stream's rate in one process and through a 2-process pool). Baseline: one process calling
  ``openslide.OpenSlide.read_region`` on the same tiles (at the level eosin reads) and converting each to an RGB
  array, openslide-python installed in its own venv. Unit: tiles/s, whole eosin time included.
- ``tissue``: seconds for tissue detection + grid (median of 5 runs after a first, cold one which is also reported).
- ``cli-help``: wall time of ``eosin --help`` (best of 5), against ``python -c pass`` as the floor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common

BENCHES = ("tiling", "tissue", "cli-help")
SETTINGS = {"mpp": 0.5, "tile_size": 256, "min_tissue": 0.5}


def eosin_side(slide_path: str, coords_out: str, workers: int | None) -> dict:
    t0 = time.perf_counter()
    import numpy as np

    import eosin
    from eosin.tiles import iter_tiles, make_grid
    from eosin.tissue import detect_tissue

    slide = eosin.open_slide(slide_path)
    masks = detect_tissue(slide)
    grid = make_grid(slide, masks, **SETTINGS)
    t_grid = time.perf_counter()
    tissue_runs = []
    for _ in range(5):
        s = time.perf_counter()
        make_grid(slide, detect_tissue(slide), **SETTINGS)
        tissue_runs.append(time.perf_counter() - s)
    t1 = time.perf_counter()
    checksum = 0
    for batch in iter_tiles(slide, grid, batch_size=64, workers=workers):
        checksum += int(batch.images[:, ::64, ::64].sum())
    t2 = time.perf_counter()
    # the stream alone, in this process and through a 2-process pool, for the record
    stream_rates = {}
    for label, w in (("stream_in_process_tiles_per_s", 0), ("stream_pool2_tiles_per_s", 2)):
        s = time.perf_counter()
        n = sum(len(b) for b in iter_tiles(slide, grid, batch_size=64, workers=w))
        stream_rates[label] = round(n / (time.perf_counter() - s), 1)
    np.save(coords_out, grid.coords)
    level = slide.best_level(grid.downsample)
    return {
        "n_tiles": len(grid),
        "level": level,
        "tile_size": grid.tile_size,
        "read_size": int(round(grid.extent / slide.levels[level].downsample)),
        "seconds": (t_grid - t0) + (t2 - t1),
        "tissue_first_seconds": t_grid - t0,
        "tissue_median_seconds": statistics.median(tissue_runs),
        "checksum": checksum,
        "workers": "auto" if workers is None else workers,
        **stream_rates,
    }


def openslide_side(slide_path: str, coords_path: str, level: int, size: int) -> dict:
    import numpy as np
    import openslide

    coords = np.load(coords_path)
    t0 = time.perf_counter()
    slide = openslide.OpenSlide(slide_path)
    checksum = 0
    for x, y in coords:
        tile = np.asarray(slide.read_region((int(x), int(y)), level, (size, size)).convert("RGB"))
        checksum += int(tile[::64, ::64].sum())
    return {"seconds": time.perf_counter() - t0, "n_tiles": int(len(coords)), "checksum": checksum}


def run(names: list[str]) -> list[dict]:
    """``tiling`` also reports ``tissue`` and ``cli-help`` (the issue asks for all three in one run)."""
    if "tiling" in names:
        names = [*names, *(n for n in ("tissue", "cli-help") if n not in names)]
    out: list[dict] = []
    slide = _common.big_slide()
    coords = _common.WORK / "tiling-coords.npy"
    if "tiling" in names or "tissue" in names:
        e, rss = _common.run_measured([sys.executable, __file__, "eosin", str(slide), str(coords), "auto"])
        if "tiling" in names:
            py = _common.peer_venv("openslide", ["openslide-python", "openslide-bin", "numpy", "pillow"])
            b, b_rss = _common.run_measured(
                [
                    str(py),
                    __file__,
                    "openslide",
                    str(slide),
                    str(coords),
                    str(e["level"]),
                    str(e["read_size"]),
                ]
            )
            eosin_rate, base_rate = e["n_tiles"] / e["seconds"], b["n_tiles"] / b["seconds"]
            out.append(
                {
                    "bench": "tiling",
                    "unit": "tiles/s",
                    "eosin": round(eosin_rate, 1),
                    "baseline": "openslide read_region loop, 1 process",
                    "baseline_value": round(base_rate, 1),
                    "ratio": round(eosin_rate / base_rate, 3),
                    "peak_rss_mb": round(rss, 1),
                    "baseline_peak_rss_mb": round(b_rss, 1),
                    "n_tiles": e["n_tiles"],
                    "workers": e["workers"],
                    "stream_in_process_tiles_per_s": e["stream_in_process_tiles_per_s"],
                    "stream_pool2_tiles_per_s": e["stream_pool2_tiles_per_s"],
                    "slide": slide.name,
                    **SETTINGS,
                }
            )
        if "tissue" in names:
            out.append(
                {
                    "bench": "tissue",
                    "unit": "s",
                    "eosin": round(e["tissue_median_seconds"], 4),
                    "first_run_s": round(e["tissue_first_seconds"], 4),
                    "baseline": "target",
                    "baseline_value": 0.15,
                    "ratio": round(e["tissue_median_seconds"] / 0.15, 3),
                    "peak_rss_mb": round(rss, 1),
                    "n_tiles": e["n_tiles"],
                }
            )
    if "cli-help" in names:
        exe = str(Path(sys.executable).with_name("eosin"))
        help_t = min(_wall([exe, "--help"]) for _ in range(5))
        floor = min(_wall([sys.executable, "-c", "pass"]) for _ in range(5))
        out.append(
            {
                "bench": "cli-help",
                "unit": "s",
                "eosin": round(help_t, 3),
                "baseline": "python -c pass",
                "baseline_value": round(floor, 3),
                "ratio": round(help_t / floor, 3),
                "peak_rss_mb": None,
                "target_s": 0.5,
            }
        )
    return out


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


if __name__ == "__main__":
    side, *args = sys.argv[1:]
    if side == "eosin":
        result = eosin_side(args[0], args[1], None if args[2] == "auto" else int(args[2]))
    elif side == "openslide":
        result = openslide_side(args[0], args[1], int(args[2]), int(args[3]))
    else:
        result = run(sys.argv[1:])  # type: ignore[assignment]
    print(json.dumps(result))
