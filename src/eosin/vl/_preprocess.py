"""Images as each vision-language library feeds them to its model, done once here for uint8 tile batches.

Three recipes cover the families: transformers' CLIP processor (shortest side to ``size``, PIL resampling, centre
crop with floor rounding), transformers' SigLIP processor (both sides to ``size``, no crop) and open_clip's
(shortest side, centre crop with torchvision's round-half rounding). Tiles already at the model's input size skip
resampling entirely; tests compare each recipe with the library's own processor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImagePrep"]

_PIL_BICUBIC, _PIL_BILINEAR = 3, 2


@dataclass(frozen=True)
class ImagePrep:
    """How a uint8 RGB batch ``(n, rows, cols, 3)`` becomes the model's float input ``(n, 3, crop, crop)``.

    ``resize``: ``"shortest"`` (shortest side to ``size``, aspect kept), ``"square"`` (both sides to ``size``);
    ``crop``: side of the centre crop (``None``: none); ``crop_rounding``: ``"floor"`` (transformers) or
    ``"round"`` (torchvision); ``resample``: PIL filter number.
    """

    size: int
    crop: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shortest"
    resample: int = _PIL_BICUBIC
    crop_rounding: str = "floor"
    engine: str = "pil"

    @property
    def input_size(self) -> int:
        return self.crop or self.size

    @classmethod
    def from_hf_folder(cls, folder: Path, *, default_square: bool) -> ImagePrep:
        """The recipe in a transformers ``preprocessor_config.json`` (CLIP's defaults when it is absent)."""
        path = Path(folder) / "preprocessor_config.json"
        cfg = json.loads(path.read_text()) if path.is_file() else {}
        size = cfg.get("size", 224)
        square = default_square
        if isinstance(size, dict):
            square = "shortest_edge" not in size
            size = size.get("shortest_edge", size.get("height", 224))
        crop = cfg.get("crop_size", size) if cfg.get("do_center_crop", not default_square) else None
        if isinstance(crop, dict):
            crop = crop.get("height")
        mean = cfg.get("image_mean", [0.48145466, 0.4578275, 0.40821073] if not default_square else [0.5] * 3)
        std = cfg.get("image_std", [0.26862954, 0.26130258, 0.27577711] if not default_square else [0.5] * 3)
        resample = cfg.get("resample", _PIL_BILINEAR if default_square else _PIL_BICUBIC)
        return cls(
            size=int(size),
            crop=None if crop is None else int(crop),
            mean=tuple(map(float, mean)),
            std=tuple(map(float, std)),
            resize="square" if square else "shortest",
            resample=int(resample),
            engine="torchvision",
        )

    def images(self, batch: np.ndarray) -> np.ndarray:
        """Resized and cropped uint8 images ``(n, side, side, 3)`` (the batch itself when nothing changes)."""
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != 3:
            from eosin.errors import UsageError

            raise UsageError(f"images must be (n, rows, cols, 3) RGB, not shape {batch.shape}.")
        if batch.dtype != np.uint8:
            batch = np.clip(batch, 0, 255).astype(np.uint8)
        if not batch.flags.writeable:  # torch.from_numpy warns on read-only arrays (PIL's)
            batch = batch.copy()
        if batch.shape[1:3] == (self.size, self.size) and self.crop in (None, self.size):
            return batch
        if self.engine == "torchvision":
            import torch

            x = self._torchvision(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2))
            return x.permute(0, 2, 3, 1).numpy()
        return np.stack([self._one(t) for t in batch])

    def _new_size(self, rows: int, cols: int) -> tuple[int, int]:
        if self.resize == "square":
            return self.size, self.size
        short, long = (rows, cols) if rows <= cols else (cols, rows)
        other = int(self.size * long / short)
        return (self.size, other) if rows <= cols else (other, self.size)

    def _torchvision(self, x):
        """transformers' default (torchvision) processors: uint8 tensor resize with antialiasing, floor crop."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        modes = {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC}
        new = self._new_size(*x.shape[-2:])
        if new != tuple(x.shape[-2:]):
            x = tvF.resize(x, list(new), interpolation=modes.get(self.resample, modes[3]), antialias=True)
        if self.crop is not None:
            rows, cols = x.shape[-2:]
            top, left = int((rows - self.crop) / 2.0), int((cols - self.crop) / 2.0)
            x = x[..., top : top + self.crop, left : left + self.crop]
        return x

    def _one(self, tile: np.ndarray) -> np.ndarray:
        from PIL import Image

        rows, cols = tile.shape[:2]
        new = self._new_size(rows, cols)
        if new != (rows, cols):
            tile = np.asarray(Image.fromarray(tile).resize((new[1], new[0]), resample=self.resample))
        if self.crop is not None:
            rows, cols = tile.shape[:2]
            if self.crop_rounding == "round":
                top, left = int(round((rows - self.crop) / 2.0)), int(round((cols - self.crop) / 2.0))
            else:
                top, left = (rows - self.crop) // 2, (cols - self.crop) // 2
            tile = tile[top : top + self.crop, left : left + self.crop]
        return np.ascontiguousarray(tile)

    def tensor(self, batch: np.ndarray, device=None):
        """The model input: float32 ``(n, 3, side, side)``, scaled to 0-1 and normalized."""
        import torch

        images = torch.from_numpy(self.images(batch)).to(device)
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)
