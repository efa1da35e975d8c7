"""Segmenting images and whole slides with a trained model, and Foucart's patch route."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from eosin._provenance import versions
from eosin.errors import UsageError
from eosin.io import param_digest
from eosin.segment._instances import separate_instances
from eosin.segment._window import BandAccumulator, flip_average, overlap_pixels, sliding_window

__all__ = ["Segmentation", "patch_probability_map", "segment_image", "segment_slide", "slide_segmentation"]

KIND = "segmentation"


@dataclass
class Segmentation:
    """A segmentation result at one resolution.

    Attributes
    ----------
    foreground
        ``(rows, cols)`` float32 probability of foreground (``1 - P(background)``).
    interior
        ``(rows, cols)`` float32 probability of an object's interior (boundary-aware models), else ``None``.
    instances
        ``(rows, cols)`` int32 object labels (0 background).
    downsample, origin
        Level-0 pixels per map pixel and the level-0 position of the map's top-left (1 and (0, 0) for images).
    mpp
        Microns per map pixel, or ``None``.
    """

    foreground: np.ndarray
    interior: np.ndarray | None
    instances: np.ndarray
    downsample: float = 1.0
    origin: tuple[int, int] = (0, 0)
    mpp: float | None = None

    @property
    def mask(self) -> np.ndarray:
        """``(rows, cols)`` bool foreground mask (probability >= 0.5)."""
        return self.foreground >= 0.5


def _maps(probs: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    foreground = 1.0 - probs[0]
    interior = probs[classes.index("interior")] if "interior" in classes else None
    return foreground.astype(np.float32), None if interior is None else interior.astype(np.float32)


def segment_image(
    image: np.ndarray,
    model: Any,
    *,
    tile_size: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 8,
    instance_method: str = "auto",
    min_size: int = 10,
    seed_threshold: float | None = None,
    tta: bool = False,
) -> Segmentation:
    """Segment an RGB image of any size by blended sliding windows, then separate the objects.

    Parameters
    ----------
    image
        ``(rows, cols, 3)`` uint8.
    model
        A :class:`~eosin.segment.Segmenter` (its ``config.classes`` tell which channel is what).
    tile_size
        Window side (default: the model's, at most the image's padded size).
    overlap
        Fraction of the window (< 1) or pixels shared by neighbouring windows.
    batch_size
        Windows per forward pass.
    instance_method, min_size, seed_threshold
        See :func:`~eosin.segment.separate_instances`; ``seed_threshold`` defaults to the one chosen on
        validation images when the model was trained (``model.config.instances``).
    tta
        Average each window's prediction over its four flips (:func:`~eosin.segment.flip_average`; 4x the
        compute; on held-out MoNuSeg images +0.01 AJI).
    """
    tile = int(tile_size or model.config.tile_size)
    rows, cols = np.asarray(image).shape[:2]
    tile = min(tile, 32 * math.ceil(max(rows, cols) / 32))
    predict = flip_average(model.predict) if tta else model.predict
    probs = sliding_window(image, predict, tile_size=tile, overlap=overlap, batch_size=batch_size)
    foreground, interior = _maps(probs, model.config.classes)
    if seed_threshold is None:
        seed_threshold = model.config.instances.get("seed_threshold")
    instances = separate_instances(
        foreground, interior=interior, method=instance_method, min_size=min_size, seed_threshold=seed_threshold
    )
    return Segmentation(foreground, interior, instances)


def segment_slide(
    slide: Any,
    model: Any,
    store: Any,
    *,
    mpp: float | None = None,
    tile_size: int = 512,
    overlap: float = 0.125,
    min_tissue: float = 0.01,
    masks: Any = None,
    batch_size: int = 4,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    tta: bool = False,
) -> str:
    """Segment a slide's tissue at ``mpp`` through the tile stream, streaming the blended map into ``store``.

    Windows overlapping by ``overlap`` are decoded by worker processes (:func:`~eosin.tiles.iter_tiles`) in row-major
    order and blended in a band one window high (:class:`BandAccumulator`), so memory does not grow with the slide.
    The group ``segmentation/<key>`` holds ``foreground`` (and ``interior`` for boundary-aware models) as uint8
    probabilities x255 over the slide's bounds; regions without tissue tiles are 0 (docs/format.md).

    Parameters
    ----------
    slide
        An open :class:`~eosin.slide.Slide` with a trustworthy mpp (or an override).
    model
        A :class:`~eosin.segment.Segmenter`.
    store
        The slide's :class:`~eosin.io.SlideStore`.
    mpp
        Resolution of the map (default: the model's training mpp).
    tile_size, overlap
        Window side in pixels at ``mpp``; overlap as a fraction (< 1) or pixels.
    min_tissue
        Windows with less tissue than this fraction are skipped (their area stays 0).
    masks
        The slide's :class:`~eosin.tissue.TissueMasks` (default: detected).
    batch_size, workers
        Windows per forward pass; decoding processes (0: in this process).
    overwrite
        Recompute a group that exists.
    tta
        Average each window's prediction over its four flips (:func:`~eosin.segment.flip_average`; 4x the
        compute).

    Returns
    -------
    str
        The group's key; an existing group with the same key is reused unless ``overwrite``.
    """
    from eosin.tiles import iter_tiles, make_grid

    mpp = mpp if mpp is not None else model.config.mpp
    if mpp is None:
        raise UsageError(
            "the model records no training mpp, so the slide resolution must be given.", fix="pass --mpp"
        )
    over = overlap_pixels(tile_size, overlap)
    key, params = slide_key(model, mpp=mpp, tile_size=tile_size, overlap=over, min_tissue=min_tissue, tta=tta)
    weights_id = model.weights_hash
    if store.has(KIND, key) and not overwrite:
        return key
    if masks is None:
        from eosin.tissue import detect_tissue

        masks = detect_tissue(slide)
    grid = make_grid(slide, masks, mpp=mpp, tile_size=tile_size, overlap=over, min_tissue=min_tissue)
    bx, by, bw, bh = (int(v) for v in slide.bounds)
    ds = grid.downsample
    shape = (math.ceil(bh / ds), math.ceil(bw / ds))
    names = ["foreground"] + (["interior"] if "interior" in model.config.classes else [])
    attrs = {
        "mpp": float(mpp),
        "downsample": ds,
        "origin": [bx, by],
        "shape": list(shape),
        "arrays": names,
        "scale": "probability x 255 (uint8)",
        "tile_size": tile_size,
        "overlap": over,
        "n_windows": len(grid),
        "grid": grid.key,
        "model": {k: v for k, v in vars(model.config).items() if k not in ("training", "instances")},
        "weights_hash": weights_id,
        "device": str(model.device),
        "precision": model.precision,  # settled below when ``auto``: the record names the path that ran
        "calibration": model.calibration,
        "versions": versions(),
        "params": params,
    }
    stride = tile_size - over
    chunks = (stride, min(shape[1], 4096))
    # a partial group: a run killed half way resumes from the last finished band of rows. Its fingerprint holds
    # the precision asked for, not the one ``auto`` settles on, so a resumed ``auto`` run finds the bands of the
    # killed one and goes on with the precision they were made with (never a map of two precisions).
    asked = {**attrs, "precision": model.requested_precision, "calibration": None}
    fingerprint = param_digest(asked, n=None)
    part = store.partial_group(KIND, key, attrs, fingerprint=fingerprint)
    made_with = part.group.attrs.get("precision")
    if part.done and model.requested_precision == "auto" and made_with not in (None, "auto"):
        model.precision, model.calibration = made_with, part.group.attrs.get("calibration")
    if names[0] not in part.group:
        for n in names:
            part.group.create_array(n, shape=shape, dtype=np.uint8, chunks=chunks)
    arrays = {n: part.group[n] for n in names}
    done = part.done

    def sink(row: int, block: np.ndarray) -> None:
        n = block.shape[1]
        if row + n <= done:  # finished by an earlier run
            return
        skip = max(0, done - row)
        fg, inner = _maps(block[:, skip:], model.config.classes)
        arrays["foreground"][row + skip : row + n] = _to_u8(fg)
        if inner is not None:
            arrays["interior"][row + skip : row + n] = _to_u8(inner)
        part.mark(row + n)

    # every window that reaches a row not yet finished (rows above are skipped by the sink)
    window_rows = np.rint((grid.y - by) / ds).astype(np.int64)
    todo = np.flatnonzero(window_rows + tile_size > done)
    band = BandAccumulator(shape, model.n_classes, tile_size=tile_size, overlap=over, sink=sink)
    predict = flip_average(model.predict) if tta else model.predict
    if todo.size:
        for batch in iter_tiles(
            slide, grid, indices=todo, batch_size=batch_size, workers=workers, progress=progress
        ):
            probs = predict(batch.images)
            if made_with != model.precision:  # ``auto`` settled on the first windows: record it, once
                part.group.attrs.update({"precision": model.precision, "calibration": model.calibration})
                made_with = model.precision
            for (x, y), p in zip(batch.coords, probs):
                band.add(round((y - by) / ds), round((x - bx) / ds), p)
    band.close()
    part.commit(replace=overwrite)
    return key


def _to_u8(p: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(p * 255), 0, 255).astype(np.uint8)


def slide_key(
    model: Any, *, mpp: float, tile_size: int, overlap: int, min_tissue: float, tta: bool = False
) -> tuple[str, dict[str, Any]]:
    """The store key of a slide's segmentation map and the parameters it stands for: the resolution, windows,
    tissue threshold, TTA, the model's configuration (not how it was trained, nor how objects are separated
    afterwards) and a hash of its weights."""
    params = {"mpp": float(mpp), "tile_size": tile_size, "overlap": overlap, "min_tissue": min_tissue}
    if tta:
        params["tta"] = "flips4"  # only when on: the keys of maps stored before TTA existed stay the same
    model_id = json.dumps(
        {k: v for k, v in vars(model.config).items() if k not in ("training", "instances")}, sort_keys=True
    )
    # the weights themselves, not how they were trained: a retrained model (same seed, same epochs) is another model
    # key order as given (not sorted): the keys of segmentations stored before stay the same
    digest = param_digest([params, model_id, model.weights_hash], sort_keys=False)
    return f"{model.config.encoder}_mpp{mpp:g}_{tile_size}px_o{overlap}_{digest}", params


def slide_segmentation(
    store: Any,
    key: str,
    *,
    instance_method: str = "auto",
    min_size: int = 10,
    seed_threshold: float | None = None,
) -> Segmentation:
    """Read a stored slide segmentation whole and separate its objects (for maps that fit in memory)."""
    group = store.read_group(KIND, key)
    foreground = np.asarray(group["foreground"]).astype(np.float32) / 255
    interior = np.asarray(group["interior"]).astype(np.float32) / 255 if "interior" in group else None
    instances = separate_instances(
        foreground, interior=interior, method=instance_method, min_size=min_size, seed_threshold=seed_threshold
    )
    a = group.attrs
    return Segmentation(foreground, interior, instances, float(a["downsample"]), tuple(a["origin"]), a["mpp"])


def patch_probability_map(
    image: np.ndarray,
    classify: Callable[[np.ndarray], np.ndarray],
    *,
    patch_size: int = 128,
    stride: int = 32,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-pixel probability from a patch classifier run on overlapping patches (Foucart et al.'s patch route).

    Each patch's probability is spread over its pixels and the overlapping patches are averaged with the
    smooth blending weights of :func:`sliding_window`, so the map changes gradually between patch centres.

    Parameters
    ----------
    image
        ``(rows, cols, 3)`` uint8.
    classify
        Maps ``(n, patch, patch, 3)`` uint8 patches to ``(n,)`` probabilities of the positive class.
    patch_size, stride
        Patch side and step in pixels (``stride <= patch_size``).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32.
    """
    if not 0 < stride <= patch_size:
        raise UsageError(f"stride must lie in 1..patch_size ({patch_size}), got {stride!r}.")

    def predict(tiles: np.ndarray) -> np.ndarray:
        p = np.asarray(classify(tiles), np.float32).reshape(-1, 1, 1, 1)
        return np.broadcast_to(p, (len(tiles), 1, patch_size, patch_size))

    return sliding_window(
        image, predict, tile_size=patch_size, overlap=patch_size - stride, batch_size=batch_size
    )[0]
