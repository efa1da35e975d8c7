"""Instance separation chosen on validation images after training: the seed threshold with the best AJI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SEED_THRESHOLDS", "tune_instances"]

#: candidate interior probabilities that seed an object
SEED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: fewest validation images with instance annotations for a choice: on MoNuSeg one image chose 0.8, which lost
#: 0.02 AJI on the held-out organs against the default 0.5 (docs/results.md)
MIN_IMAGES = 2


def tune_instances(
    model: Any,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    stems: Sequence[str] = (),
    thresholds: Sequence[float] = SEED_THRESHOLDS,
    min_size: int = 10,
    batch_size: int = 8,
    min_images: int = MIN_IMAGES,
) -> dict[str, Any]:
    """The seed threshold of :func:`~eosin.segment.separate_instances` that gives the best mean AJI on
    ``images`` against their instance ``labels`` (whole images, segmented as ``eosin segment`` does).

    Returns ``{"seed_threshold", "aji": {threshold: mean AJI}, "images": stems, "min_size"}``; ties go to the
    lower threshold. With fewer than ``min_images`` images the scores are recorded but ``seed_threshold`` is
    ``None`` (the default, 0.5, applies) and ``"why"`` says so: one image is too narrow a ground for a choice.
    """
    from eosin.evaluate import aji
    from eosin.segment._infer import _maps
    from eosin.segment._instances import separate_instances
    from eosin.segment._window import sliding_window

    tile = int(model.config.tile_size)
    maps = []
    for image in images:
        side = min(tile, 32 * -(-max(image.shape[:2]) // 32))
        probs = sliding_window(image, model.predict, tile_size=side, overlap=0.25, batch_size=batch_size)
        maps.append(_maps(probs, model.config.classes))
    scores: dict[float, float] = {}
    for t in thresholds:
        values = [
            aji(truth, separate_instances(fg, interior=inner, min_size=min_size, seed_threshold=t))
            for (fg, inner), truth in zip(maps, labels)
        ]
        scores[float(t)] = round(float(np.mean(values)), 4)
    best = max(scores, key=lambda t: (scores[t], -t))
    out = {"seed_threshold": best, "aji": scores, "images": list(stems), "min_size": min_size}
    if len(images) < min_images:
        out["seed_threshold"] = None
        out["why"] = (
            f"{len(images)} validation image(s) with instance annotations; {min_images} or more are needed to "
            f"choose (the best here was {best})"
        )
    return out
