"""GPU benchmarks (issue 14): ``embed-gpu`` and ``train-seg-gpu``; on a machine without CUDA they report nothing.

``python benchmarks/run.py embed-gpu train-seg-gpu`` (a prepared, short device check)

- ``embed-gpu``: the big slide tiled at 0.5 µm/px, 224 px (not timed). The decode ceiling: every tile read by
  ``iter_tiles`` with one worker process per CPU (at most 8) and no model. eosin: ``eosin embed STORE --encoder
  resnet18 --weights none --device cuda`` with default settings (calibrated precision, 256-tile batches, pinned
  memory, non-blocking copies, decoding in worker processes), timed as a whole command after one untimed run
  that calibrates. Target: >= 3,000 tiles/s, or >= 80 % of the decode ceiling, whichever is lower.
- ``train-seg-gpu``: ``eosin.segment.train_segmenter`` (U-Net, resnet18 encoder, random weights) on the MoNuSeg
  images of ../shared/data, 256-px crops, batch 16, 2 epochs of 1,024 crops, default settings (crop workers and
  precision by measurement). GPU utilisation is sampled every 0.2 s with ``nvidia-smi`` while it trains
  (target >= 70 %); crops/s over the epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common

BENCHES = ("embed-gpu", "train-seg-gpu")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _embed() -> dict:
    from eosin.io import SlideStore
    from eosin.slide import open_slide
    from eosin.tiles import TileGrid, default_workers, iter_tiles

    slide_path = _common.big_slide()
    work = _common.WORK / "embed-gpu"
    eosin = str(Path(sys.executable).with_name("eosin"))
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        [eosin, "tile", str(slide_path), "--mpp", "0.5", "--size", "224", "--out", str(work), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store = work / slide_path.stem / "store.zarr"
    st = SlideStore.open(store)
    group = st.read_group("grids", st.keys("grids")[0])
    grid = TileGrid.from_group(group, group.attrs)
    workers = min(8, default_workers())
    t0 = time.perf_counter()
    n = sum(len(b.images) for b in iter_tiles(open_slide(slide_path), grid, batch_size=256, workers=workers))
    ceiling = n / (time.perf_counter() - t0)
    command = [
        eosin,
        "embed",
        str(store),
        "--encoder",
        "resnet18",
        "--weights",
        "none",
        "--device",
        "cuda",
        "-q",
    ]
    env = {"EOSIN_HOME": _common.fresh_home("embed-gpu")}
    first, _ = _common.run_measured(command, env=env)  # calibrates
    shutil.rmtree(store / "features")
    t0 = time.perf_counter()
    e, rss = _common.run_measured(command, env=env)
    rate = e["n_tiles"] / (time.perf_counter() - t0)
    target = min(3000.0, 0.8 * ceiling)
    return {
        "bench": "embed-gpu",
        "unit": "tiles/s",
        "eosin": round(rate, 1),
        "baseline": f"decode ceiling: iter_tiles, {workers} worker processes, no model",
        "baseline_value": round(ceiling, 1),
        "ratio": round(rate / ceiling, 3),
        "target": round(target, 1),
        "met": rate >= target,
        "precision": e.get("precision"),
        "runtime": e.get("runtime"),
        "calibration": first.get("calibration"),
        "eosin_inner_tiles_per_s": e.get("tiles_per_s"),
        "n_tiles": e["n_tiles"],
        "peak_rss_mb": round(rss, 1),
    }


def _gpu_busy(samples: list[float], done: threading.Event) -> None:
    while not done.is_set():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            samples.append(float(out.splitlines()[0]))
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)


def _train_seg() -> dict:
    from eosin.segment import train_segmenter

    data = _common.data_dir() / "segmentation" / "monuseg-train"
    out = _common.WORK / "train-seg-gpu"
    shutil.rmtree(out, ignore_errors=True)
    os.environ["EOSIN_HOME"] = _common.fresh_home("train-seg-gpu")
    kw = dict(epochs=2, crops_per_epoch=1024, crop=256, batch_size=16, val_fraction=0.1, device="cuda")
    train_segmenter(data / "tissue_image", data / "masks", out / "warm", **{**kw, "epochs": 1})  # calibrates
    samples: list[float] = []
    done = threading.Event()
    thread = threading.Thread(target=_gpu_busy, args=(samples, done), daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = train_segmenter(data / "tissue_image", data / "masks", out / "run", **kw)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    busy = sum(samples) / len(samples) if samples else None
    return {
        "bench": "train-seg-gpu",
        "unit": "% GPU busy",
        "eosin": None if busy is None else round(busy, 1),
        "baseline": "target: 70 % GPU utilisation (nvidia-smi, every 0.2 s)",
        "baseline_value": 70.0,
        "ratio": None if busy is None else round(busy / 70.0, 3),
        "crops_per_s": round(kw["epochs"] * kw["crops_per_epoch"] / seconds, 1),
        "precision": result.get("precision"),
        "loader": result.get("loader"),
        "peak_rss_mb": None,
    }


def run(names: list[str]) -> list[dict]:
    if not _cuda():
        print(f"{names}: no CUDA GPU on this machine, nothing measured", file=sys.stderr)
        return []
    out = []
    if "embed-gpu" in names:
        out.append(_embed())
    if "train-seg-gpu" in names:
        out.append(_train_seg())
    return out


if __name__ == "__main__":
    for record in run(sys.argv[1:] or list(BENCHES)):
        print(json.dumps(record))
