"""Segmentation: U-Net training, blended sliding-window inference on images and slides, instance separation.

Names load on first use, so ``import eosin.segment`` loads neither numpy nor PyTorch.

>>> from eosin.segment import train_segmenter, load_segmenter, segment_image
>>> train_segmenter("images/", "masks/", "model/", encoder="resnet18", epochs=5)  # doctest: +SKIP
>>> seg = segment_image(rgb, load_segmenter("model/"))  # doctest: +SKIP
>>> seg.mask.shape == rgb.shape[:2], seg.instances.max()  # doctest: +SKIP
"""

from __future__ import annotations

from eosin._lazy import lazy_getattr

_LAZY = {
    "SegConfig": "_model",
    "Segmenter": "_model",
    "build_unet": "_model",
    "load_segmenter": "_model",
    "save_segmenter": "_model",
    "train_segmenter": "_train",
    "dice_ce_loss": "_train",
    "split_by_image": "_train",
    "Augment": "_data",
    "CropSampler": "_data",
    "pair_files": "_data",
    "read_class_mask": "_data",
    "target_from_labels": "_data",
    "sliding_window": "_window",
    "flip_average": "_window",
    "blend_window": "_window",
    "BandAccumulator": "_window",
    "separate_instances": "_instances",
    "Segmentation": "_infer",
    "segment_image": "_infer",
    "segment_slide": "_infer",
    "slide_segmentation": "_infer",
    "patch_probability_map": "_infer",
    "write_segmentation": "_outputs",
    "instance_features": "_outputs",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
