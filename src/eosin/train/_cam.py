"""Class activation maps of a tile classifier (Grad-CAM, through the maintained ``grad-cam`` package), per tile and
stitched over the slide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["CAM_SIZE", "cam_target", "stitch_cams", "tile_cams"]

#: side of the per-tile maps kept in the store (the maps of a 224 px ResNet have 7x7 cells, a ViT/16 14x14)
CAM_SIZE = 32


def cam_target(encoder: Any) -> tuple[Any, Callable | None]:
    """The layer Grad-CAM reads and how to turn its output into ``(N, C, rows, cols)``.

    Vision transformers (token pooling): the last block's first norm, its patch tokens laid out on the patch
    grid. CNNs: the last module whose output is a spatial map (``(N, C, rows, cols)`` with more than one cell),
    found by one forward pass of a blank image (for a ResNet, ``layer4``).
    """
    import torch

    model = encoder.model
    if hasattr(model, "blocks") and hasattr(model, "patch_embed"):  # timm ViT
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        rows, cols = model.patch_embed.grid_size

        def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
            patches = tokens[:, prefix:, :]
            return patches.reshape(tokens.shape[0], rows, cols, tokens.shape[-1]).permute(0, 3, 1, 2)

        return model.blocks[-1].norm1, tokens_to_map
    spatial: list[Any] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _i, out: (
                spatial.append(mod)
                if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 and out.shape[-2] > 1
                else None
            )
        )
        for m in model.modules()
        if m is not model
    ]
    try:
        param = next(model.parameters())
        size = int(encoder.input_size)
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
    if not spatial:
        raise UsageError(
            f"the encoder {encoder.spec.name!r} has no spatial feature map for a class activation map.",
            fix="use a CNN or a vision transformer encoder",
        )
    return spatial[-1], None


def tile_cams(model: Any, x: Any, classes: np.ndarray, *, size: int = CAM_SIZE) -> np.ndarray:
    """Grad-CAM of each image for its class: ``(N, size, size)`` float32, each map scaled to 0-1.

    Parameters
    ----------
    model
        A :class:`~eosin.train.TileClassifier` with a differentiable head (fine-tuned or linear probe).
    x
        Normalized images ``(N, 3, S, S)`` (what the model takes).
    classes
        ``(N,)`` class index to explain per image (e.g. the predicted class).
    """
    import cv2
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if getattr(model.head, "kind", "linear") == "knn":
        raise UsageError(
            "a k-nearest-neighbour head has no gradient, so it has no class activation map.",
            fix="use a fine-tuned or linear-probe checkpoint for --cam",
        )
    layer, reshape = cam_target(model.encoder)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    x = x.detach().float().contiguous().requires_grad_(True)  # a graph even when the weights are frozen
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=targets)
    model.zero_grad(set_to_none=True)
    return np.stack(
        [cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for m in maps]
    )


def stitch_cams(
    cams: np.ndarray, coords: np.ndarray, extent: float, *, shape: tuple[int, int], bounds: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile maps placed on a slide-wide image of ``shape`` (e.g. the thumbnail's), overlaps averaged.

    ``coords`` are the level-0 ``x, y`` of the tiles the maps were computed on, ``extent`` their level-0 side and
    ``bounds`` the slide's ``(x, y, width, height)`` that the image shows. Returns the map (float32, 0 where no
    tile) and the mask of covered pixels.
    """
    import cv2

    rows, cols = shape
    bx, by, bw, bh = bounds
    sx, sy = cols / float(bw), rows / float(bh)
    total = np.zeros((rows, cols), np.float32)
    weight = np.zeros((rows, cols), np.float32)
    for (x, y), m in zip(np.asarray(coords), cams, strict=True):
        x0, y0 = int(round((x - bx) * sx)), int(round((y - by) * sy))
        x1, y1 = int(round((x - bx + extent) * sx)), int(round((y - by + extent) * sy))
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        patch = cv2.resize(m.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        total[cy0:cy1, cx0:cx1] += patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        weight[cy0:cy1, cx0:cx1] += 1
    covered = weight > 0
    total[covered] /= weight[covered]
    return total, covered
