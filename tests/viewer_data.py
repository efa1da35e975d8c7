"""Data for the viewer tests: a real eosin output folder (``eosin tile`` on the SVS) plus groups written the way
later stages write theirs: a text-to-region heatmap laid out as ``eosin heatmap`` writes ``text_heatmap/<key>``
(rows aligned with the grid, ``coords``, a ``grid`` attribute, one column per prompt), MIL attention, a
segmentation map, instances GeoJSON beside the store; and a broken file."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from conftest import SLIDES, require

SVS = SLIDES / "CMU-1-Small-Region.svs"
SCORE_KIND, SCORE_KEY = "text_heatmap", "clip-test--grid--a1b2c3"


def make_output(root: Path) -> Path:
    """``root/out`` holding ``CMU-1-Small-Region/store.zarr`` with tissue, grid and a score group."""
    from eosin.cli._main import main
    from eosin.io import SlideStore

    require(SVS)
    out = root / "out"
    with redirect_stdout(io.StringIO()):
        code = main(
            ["tile", str(SVS), "--mpp", "0.5", "--size", "256", "--out", str(out), "-q", "--workers", "0"]
        )
    assert code == 0
    store = SlideStore.open(out / SVS.stem / "store.zarr")
    (grid_key,) = store.keys("grids")
    grid = store.read_group("grids", grid_key)
    coords = np.asarray(grid["coords"])
    tissue = np.asarray(grid["tissue_fraction"])
    # a per-tile score in [0, 1] that varies over the slide: more to the right and down, scaled by tissue
    span = np.ptp(coords, axis=0) + 1
    rel = (coords - coords.min(0)) / span
    scores = np.stack([0.2 + 0.8 * rel[:, 0] * tissue, 1.0 - rel[:, 1]], axis=1).astype(np.float32)
    store.write_group(
        SCORE_KIND,
        SCORE_KEY,
        {"proba": scores, "similarity": (scores * 0.4 - 0.1).astype(np.float32), "coords": coords},
        {"grid": grid_key, "prompts": ["tumor", "stroma"], "mode": "softmax", "n_tiles": len(coords)},
    )
    # attention as eosin train mil writes it (own coords, rows follow the grid), summing to 1
    attention = (scores[:, 0] / scores[:, 0].sum()).astype(np.float32)
    store.write_group(
        "attention",
        "abmil_test",
        {"attention": attention, "coords": coords},
        {"grid": grid_key, "aggregator": "abmil"},
    )
    # a segmentation map as eosin segment writes it: the tissue mask as the foreground probability
    (tissue_key,) = store.keys("tissue")
    tissue_group = store.read_group("tissue", tissue_key)
    foreground = (np.asarray(tissue_group["tissue"]) != 0).astype(np.uint8) * 255
    store.write_group(
        "segmentation",
        "unet_test",
        {"foreground": foreground},
        {
            "downsample": tissue_group.attrs["downsample"],
            "origin": tissue_group.attrs["origin"],
            "shape": list(foreground.shape),
        },
    )
    from eosin.io import features_from_masks, write_geojson

    write_geojson(
        out / SVS.stem / "instances.geojson",
        features_from_masks(
            {"Nucleus": (foreground > 0, (255, 0, 0))},
            downsample=tuple(tissue_group.attrs["downsample"]),
            origin=tuple(tissue_group.attrs["origin"]),
            object_type="detection",
        ),
    )
    shutil.copy(SLIDES / "broken-not-a-slide.svs", out / "broken-not-a-slide.svs")
    return out
