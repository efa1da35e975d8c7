"""Vision-language benchmarks.

``python benchmarks/run.py vl-zeroshot vl-search``

- ``vl-zeroshot``: ``eosin zeroshot STORE --model plip --weights FOLDER`` over the big slide's tissue tiles (224 px at
  0.5 µm/px) with a CLIP ViT-B/32-sized model of random weights (transformers' default ``CLIPConfig``), timed as a
  whole command (start-up, reading tiles from the slide, image tower, prompt ensembles, CSV), against a plain loop
  of the reference library: transformers ``CLIPModel.get_image_features`` on the same tiles already decoded in
  memory (decoding not timed), batch 32, CLIP normalization in the loop. ``EOSIN_BENCH_TILES`` limits both sides to
  the first N tiles.
- ``vl-search``: ``EOSIN_BENCH_VECTORS`` (default 1,000,000) random unit 512-d vectors in an :class:`eosin.vl`
  index; build seconds, p50 latency of single queries (200 random queries), recall@10 of all 200 against exact
  search (numpy), and the process's peak RSS. The baseline is exact search by a numpy matrix-vector product.
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

BENCHES = ("vl-zeroshot", "vl-search")


def _clip_folder() -> Path:
    folder = _common.WORK / "clip-b32-random"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    sys.path.insert(0, str(_common.ROOT / "tests"))
    from vl_fixtures import write_clip_tokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    CLIPModel(CLIPConfig(projection_dim=512)).eval().save_pretrained(folder)  # ViT-B/32 + 12-layer text tower
    write_clip_tokenizer(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def baseline(store: str, folder: str, limit: int) -> dict:
    import numpy as np
    import torch
    from transformers import CLIPModel

    from eosin.io import SlideStore
    from eosin.slide import open_slide
    from eosin.tiles import TileGrid, read_tiles

    st = SlideStore.open(store)
    group = st.read_group("grids", st.keys("grids")[0])
    grid = TileGrid.from_group(group, group.attrs)
    slide = open_slide(st.slide["path"])
    coords = grid.coords[:limit] if limit else grid.coords
    tiles = read_tiles(slide, coords, tile_size=grid.tile_size, downsample=grid.downsample)
    model = CLIPModel.from_pretrained(folder).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    outs = []
    with torch.no_grad():
        for i in range(0, len(tiles), 32):
            x = torch.from_numpy(tiles[i : i + 32]).permute(0, 3, 1, 2).float() / 255.0
            out = model.get_image_features(pixel_values=(x - mean) / std)
            outs.append(out if hasattr(out, "shape") else out.pooler_output)
    return {
        "seconds": time.perf_counter() - t0,
        "n_tiles": int(len(tiles)),
        "checksum": float(np.abs(torch.cat(outs).numpy()).sum()),
    }


def _zeroshot() -> dict:
    slide = _common.big_slide()
    work = _common.WORK / "vl"
    eosin = str(Path(sys.executable).with_name("eosin"))
    limit = int(os.environ.get("EOSIN_BENCH_TILES", "0"))
    folder = _clip_folder()
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        [eosin, "tile", str(slide), "--mpp", "0.5", "--size", "224", "--out", str(work), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store = work / slide.stem / "store.zarr"
    if limit:
        from eosin.io import SlideStore
        from eosin.tiles import TileGrid

        st = SlideStore.open(store)
        key = st.keys("grids")[0]
        group = st.read_group("grids", key)
        grid = TileGrid.from_group(group, group.attrs)
        arrays, attrs = grid.subset(list(range(min(limit, len(grid))))).to_group()
        st.write_group("grids", key, arrays, attrs, overwrite=True)
    prompts = work / "prompts.json"
    prompts.write_text(
        json.dumps(
            {
                "classnames": {"TUM": ["tumour"], "STR": ["stroma"], "ADI": ["fat"]},
                "templates": ["an H&E image of CLASSNAME.", "CLASSNAME"],
            }
        )
    )
    command = [
        eosin,
        "zeroshot",
        str(store),
        "--model",
        "plip",
        "--weights",
        str(folder),
        "--classes",
        str(prompts),
        "--out",
        str(work / "pred.csv"),
        "--batch-size",
        "32",
        "-q",
    ]
    t0 = time.perf_counter()
    e, rss = _common.run_measured(command)
    seconds = time.perf_counter() - t0
    b, b_rss = _common.run_measured(
        [sys.executable, __file__, "baseline", str(store), str(folder), str(limit)]
    )
    rate, base = e["n_tiles"] / seconds, b["n_tiles"] / b["seconds"]
    return {
        "bench": "vl-zeroshot",
        "unit": "tiles/s",
        "eosin": round(rate, 2),
        "baseline": "transformers CLIPModel.get_image_features, no_grad, batch 32, tiles pre-decoded",
        "baseline_value": round(base, 2),
        "ratio": round(rate / base, 3),
        "precision": e.get("precision"),
        "peak_rss_mb": round(rss, 1),
        "baseline_peak_rss_mb": round(b_rss, 1),
        "n_tiles": e["n_tiles"],
    }


def search_child(n: int) -> dict:
    import numpy as np

    from eosin.vl import build_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 512), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((200, 512), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t0 = time.perf_counter()
    index = build_index(x)
    index.query(q[:1], 10)  # the search structure is built on first use
    build = time.perf_counter() - t0
    lat, found = [], []
    for v in q:
        t = time.perf_counter()
        _, rows = index.query(v[None], 10)
        lat.append(time.perf_counter() - t)
        found.append(rows[0])
    exact_lat = []
    for v in q[:50]:
        t = time.perf_counter()
        np.argpartition(-(x @ v), 10)[:10]
        exact_lat.append(time.perf_counter() - t)
    exact = np.concatenate([np.argpartition(-(part @ x.T), 10, axis=1)[:, :10] for part in np.split(q, 8)])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    return {
        "n": n,
        "build_s": round(build, 2),
        "p50_ms": round(1000 * float(np.median(lat)), 3),
        "exact_p50_ms": round(1000 * float(np.median(exact_lat)), 3),
        "recall_at_10": round(float(recall), 4),
        "method": index.method,
    }


def _search() -> dict:
    n = int(os.environ.get("EOSIN_BENCH_VECTORS", "1000000"))
    r, rss = _common.run_measured([sys.executable, __file__, "search", str(n)])
    return {
        "bench": "vl-search",
        "unit": "ms p50 per query",
        "eosin": r["p50_ms"],
        "baseline": "exact numpy matrix-vector product + argpartition",
        "baseline_value": r["exact_p50_ms"],
        "ratio": round(r["exact_p50_ms"] / max(r["p50_ms"], 1e-9), 3),
        "recall_at_10": r["recall_at_10"],
        "build_s": r["build_s"],
        "n_vectors": r["n"],
        "method": r["method"],
        "peak_rss_mb": round(rss, 1),
    }


def run(names: list[str]) -> list[dict]:
    return [_zeroshot() if name == "vl-zeroshot" else _search() for name in names]


if __name__ == "__main__":
    if sys.argv[1] == "baseline":
        print(json.dumps(baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif sys.argv[1] == "search":
        print(json.dumps(search_child(int(sys.argv[2]))))
    else:
        for record in run(sys.argv[1:]):
            print(json.dumps(record))
