"""Training data for segmenters: image/mask pairs by file stem, targets, balanced random crops, augmentation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eosin.errors import UsageError

__all__ = [
    "Augment",
    "CropBatches",
    "CropSampler",
    "SegSample",
    "load_pairs",
    "BINARY_MASKS",
    "UNKNOWN_PART",
    "pair_files",
    "read_class_mask",
    "crop_loader",
    "read_image",
    "target_from_labels",
]

#: target value of an object pixel whose part (interior or boundary) is unknown: inside a binary mask's component,
#: where touching objects may have merged. It counts as foreground; the loss asks only that it is not background.
UNKNOWN_PART = 3
#: how binary (8-bit) masks teach a boundary-aware model, see :func:`load_pairs`
BINARY_MASKS = ("auto", "components", "foreground")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".xml")


@dataclass
class SegSample:
    """One training image: ``image`` ``(rows, cols, 3)`` uint8 and ``target`` ``(rows, cols)`` uint8 class ids."""

    stem: str
    image: np.ndarray
    target: np.ndarray
    contacts_known: bool = True  # False: a binary mask's object pixels are UNKNOWN_PART in the target
    source: Path | None = None  # the annotation file the target was made from


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as ``(rows, cols, 3)`` RGB uint8."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def pair_files(images: str | os.PathLike[str], masks: str | os.PathLike[str]) -> list[tuple[str, Path, Path]]:
    """``(stem, image, mask)`` for every image in ``images`` with a mask of the same stem in ``masks``.

    Raises :class:`~eosin.errors.UsageError` when nothing pairs.
    """

    def by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
        if not folder.is_dir():
            raise UsageError("not a folder.", path=folder, fix="pass a folder of images or masks")
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes and p.is_file()}

    imgs, msks = by_stem(Path(images), IMAGE_SUFFIXES), by_stem(Path(masks), MASK_SUFFIXES)
    pairs = [(s, imgs[s], msks[s]) for s in sorted(imgs.keys() & msks.keys())]
    if not pairs:
        raise UsageError(
            "no image has a mask with the same file stem.",
            path=Path(masks),
            fix="name each mask like its image (a.tif -> a.png)",
        )
    return pairs


def read_class_mask(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int] | None = None,
    palette: Mapping[str, Sequence[int]] | None = None,
    threshold: int = 127,
) -> np.ndarray:
    """Instance labels (binary masks) or class ids (colour-coded masks through ``palette``) of a mask file.

    - Aperio XML polygons (``shape`` needed) and 16-bit label images: instance labels as they are.
    - Grey or RGB 8-bit masks without a palette: foreground is grey ``> threshold`` (JPEG masks are not exactly
      0/255), its 8-connected components are the instances.
    - With ``palette`` (``{class name: (r, g, b)}``, background first): every pixel gets the index of the nearest
      palette colour (JPEG artefacts land on the right class).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` int32.
    """
    from eosin.evaluate import read_aperio_xml, read_mask

    path = Path(path)
    if path.suffix.lower() == ".xml":
        if shape is None:
            raise UsageError("an XML mask needs the image's shape.", path=path)
        return read_aperio_xml(path, shape)
    if palette is None:
        return read_mask(path, threshold=threshold)
    rgb = read_image(path).astype(np.int32)
    colours = np.asarray(list(palette.values()), np.int32)
    dist = ((rgb[:, :, None, :] - colours[None, None]) ** 2).sum(-1)
    return np.argmin(dist, axis=-1).astype(np.int32)


def target_from_labels(
    labels: np.ndarray, *, boundary: bool, width: int = 1, contacts_known: bool = True
) -> np.ndarray:
    """Training target of instance labels: ``0`` background, ``1`` object, and with ``boundary`` ``2`` on the
    ``width``-pixel inner rim of every object (where touching objects meet, the rim separates them).

    ``contacts_known=False`` (labels that are a binary mask's components, in which touching objects merge): only
    the rim against the background is ``2``; the rest of each object is :data:`UNKNOWN_PART`, since a contact
    between two merged objects may run through it."""
    labels = np.asarray(labels)
    target = (labels > 0).astype(np.uint8)
    if boundary:
        from skimage.segmentation import find_boundaries

        # the rims of the objects, or with unknown contacts only the rim of the foreground against the background
        rim = find_boundaries(labels if contacts_known else labels > 0, mode="inner")
        if width > 1:
            from scipy import ndimage

            rim = ndimage.binary_dilation(rim, iterations=width - 1) & (labels > 0)
        if not contacts_known:
            target[labels > 0] = UNKNOWN_PART
        target[rim & (labels > 0)] = 2
    return target


def load_pairs(
    pairs: Sequence[tuple[str, Path, Path]],
    *,
    boundary: bool,
    palette: Mapping[str, Sequence[int]] | None = None,
    instances: str | os.PathLike[str] | None = None,
    binary_masks: str = "auto",
) -> list[SegSample]:
    """Read image/mask pairs into memory as :class:`SegSample` (targets built by :func:`target_from_labels`).

    ``instances``: an optional folder of instance annotations (Aperio XML or 16-bit labels) by stem; where one
    exists it replaces the mask for the target, so touching objects are told apart.

    ``binary_masks`` (boundary-aware targets only): how an image whose only annotation is a binary mask teaches.
    ``components``: its connected components are the objects (touching objects merge, and the model learns that
    no boundary runs between them). ``foreground``: it teaches foreground and the objects' outline against the
    background; the boundary between touching objects is learnt from instance annotations alone (its object
    pixels are :data:`UNKNOWN_PART`). ``auto``: ``foreground`` when some images have instance annotations and
    others only binary masks (MoNuSeg's binary masks merge 10–45 % of touching nuclei), else ``components``.
    """
    if binary_masks not in BINARY_MASKS:
        from eosin.errors import UnknownNameError

        raise UnknownNameError("binary-mask handling", binary_masks, list(BINARY_MASKS))
    extra: dict[str, Path] = {}
    if instances is not None:
        extra = {p.stem: p for p in Path(instances).iterdir() if p.suffix.lower() in MASK_SUFFIXES}
    from eosin.evaluate import mask_separates_instances

    sources = {stem: extra.get(stem, mask_path) for stem, _, mask_path in pairs}
    separates = {stem: mask_separates_instances(src) for stem, src in sources.items()}
    if binary_masks == "auto":
        mixed = any(separates.values()) and not all(separates.values())
        binary_masks = "foreground" if mixed else "components"
    out = []
    for stem, image_path, mask_path in pairs:
        image = read_image(image_path)
        source = sources[stem]
        values = read_class_mask(source, shape=image.shape[:2], palette=palette)
        if values.shape != image.shape[:2]:
            raise UsageError(
                f"mask {values.shape} and image {image.shape[:2]} differ in size.",
                path=mask_path,
                fix="masks must be the size of their images",
            )
        # class masks and plain foreground models have no contacts to know
        known = palette is not None or not boundary or separates[stem] or binary_masks == "components"
        target = (
            values.astype(np.uint8)
            if palette
            else target_from_labels(values, boundary=boundary, contacts_known=known)
        )
        out.append(SegSample(stem, image, target, contacts_known=known, source=Path(source)))
    return out


class CropSampler:
    """Random crops with a target fraction of positive crops (Foucart et al.'s balancing).

    An image is drawn with probability proportional to its area (every pixel equally likely to be trained on,
    whatever the mix of image sizes); with probability ``positive_fraction`` a crop is then centred (with jitter)
    on a random foreground pixel of it, else placed uniformly; images smaller than the crop are padded by
    reflection.

    Parameters
    ----------
    samples
        The training images.
    crop
        Crop side in pixels.
    positive_fraction
        Target share of crops that contain foreground.
    seed
        Random seed.
    """

    def __init__(
        self, samples: Sequence[SegSample], *, crop: int, positive_fraction: float = 0.5, seed: int = 0
    ):
        if not 0 <= positive_fraction <= 1:
            raise UsageError(f"positive_fraction must lie in [0, 1], got {positive_fraction!r}.")
        areas = np.array([s.target.size for s in samples], float)
        # equal sizes keep the plain uniform draw (and with it the crops of runs made before area weighting)
        self.p = None if np.unique(areas).size <= 1 else areas / areas.sum()
        self.samples = [_pad_to(s, crop) for s in samples]
        self.crop = crop
        self.positive_fraction = positive_fraction
        self.rng = np.random.default_rng(seed)
        self.positives = [np.flatnonzero(s.target.ravel() > 0) for s in self.samples]

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(crop, crop, 3)`` uint8 image and its ``(crop, crop)`` target."""
        n = len(self.samples)
        i = int(self.rng.integers(n)) if self.p is None else int(self.rng.choice(n, p=self.p))
        s = self.samples[i]
        rows, cols = s.target.shape
        c = self.crop
        pos = self.positives[i]
        if pos.size and self.rng.random() < self.positive_fraction:
            r, q = divmod(int(pos[self.rng.integers(pos.size)]), cols)
            y = int(np.clip(r - self.rng.integers(c), 0, rows - c))
            x = int(np.clip(q - self.rng.integers(c), 0, cols - c))
        else:
            y, x = int(self.rng.integers(rows - c + 1)), int(self.rng.integers(cols - c + 1))
        return s.image[y : y + c, x : x + c], s.target[y : y + c, x : x + c]


def _pad_to(s: SegSample, crop: int) -> SegSample:
    rows, cols = s.target.shape
    pr, pc = max(0, crop - rows), max(0, crop - cols)
    if not (pr or pc):
        return s
    image = np.pad(s.image, ((0, pr), (0, pc), (0, 0)), mode="reflect")
    target = np.pad(s.target, ((0, pr), (0, pc)), mode="reflect")
    return SegSample(s.stem, image, target, s.contacts_known, s.source)


class Augment:
    """Flips, 90-degree rotations, elastic deformation and HED stain jitter of an image and its target.

    Parameters
    ----------
    elastic
        Probability of an elastic deformation (Simard et al.: Gaussian-smoothed random displacements).
    alpha, sigma
        Displacement scale and smoothness of the elastic field, in pixels.
    hed_sigma, hed_bias
        :class:`~eosin.stain.HEDJitter` strengths (0 turns it off).
    seed
        Random seed.
    """

    def __init__(
        self,
        *,
        elastic: float = 0.3,
        alpha: float = 120.0,
        sigma: float = 8.0,
        hed_sigma: float = 0.05,
        hed_bias: float = 0.01,
        seed: int = 0,
    ):
        from eosin.stain import HEDJitter

        self.elastic, self.alpha, self.sigma = elastic, alpha, sigma
        self.rng = np.random.default_rng(seed)
        self.hed = HEDJitter(sigma=hed_sigma, bias=hed_bias, seed=seed) if hed_sigma or hed_bias else None

    def __call__(self, image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(self.rng.integers(4))
        image, target = np.rot90(image, k), np.rot90(target, k)
        if self.rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, ::-1]
        image, target = np.ascontiguousarray(image), np.ascontiguousarray(target)
        if self.rng.random() < self.elastic:
            image, target = self._elastic(image, target)
        if self.hed is not None:
            image = self.hed.transform(image)
        return image, target

    def _elastic(self, image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        rows, cols = target.shape
        shape = (rows, cols)
        dx = (
            cv2.GaussianBlur(self.rng.uniform(-1, 1, shape).astype(np.float32), (0, 0), self.sigma)
            * self.alpha
        )
        dy = (
            cv2.GaussianBlur(self.rng.uniform(-1, 1, shape).astype(np.float32), (0, 0), self.sigma)
            * self.alpha
        )
        gx, gy = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
        mx, my = gx + dx, gy + dy
        image = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        target = cv2.remap(target, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
        return image, target


class CropBatches:
    """Training batches of augmented crops, made in DataLoader worker processes (or in this one).

    An iterable of ``steps`` batches per epoch, each ``(images uint8 (B, c, c, 3), targets int64 (B, c, c))``
    torch tensors. In this process it draws from one :class:`CropSampler` and one :class:`Augment` seeded with
    ``seed`` (the same stream, epoch after epoch, as sampling in the training loop). In worker ``k`` of ``w``
    (persistent across epochs) it draws from its own sampler and augmenter seeded by ``(seed, k)`` and makes
    batches ``k, k + w, ...`` of each epoch: the same distribution, reproducible for a given number of workers.
    """

    def __init__(
        self,
        samples: Sequence[SegSample],
        *,
        crop: int,
        batch_size: int,
        steps: int,
        positive_fraction: float,
        augment: dict,
        seed: int,
    ):
        self.samples, self.crop, self.batch_size, self.steps = list(samples), crop, batch_size, steps
        self.positive_fraction, self.augment_params, self.seed = positive_fraction, dict(augment), seed
        self._state: tuple | None = None

    def _draws(self, stream: int | None) -> tuple[CropSampler, Augment]:
        if self._state is None or self._state[0] != stream:
            seed = (
                self.seed
                if stream is None
                else int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0])
            )
            sampler = CropSampler(
                self.samples, crop=self.crop, positive_fraction=self.positive_fraction, seed=seed
            )
            self._state = (stream, sampler, Augment(**self.augment_params, seed=seed))
        return self._state[1], self._state[2]

    def batch(self, stream: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One batch as numpy arrays, from the draws of ``stream`` (None: this process's)."""
        sampler, augment = self._draws(stream)
        pairs = [augment(*sampler.sample()) for _ in range(self.batch_size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.int64)

    def __iter__(self):
        import torch

        info = torch.utils.data.get_worker_info()
        k, w = (0, 1) if info is None else (info.id, info.num_workers)
        for _ in range(k, self.steps, w):
            images, targets = self.batch(None if info is None else k)
            yield torch.from_numpy(images), torch.from_numpy(targets)

    def __len__(self) -> int:
        return self.steps


def _iterable(inner: CropBatches):
    """``inner`` as a torch ``IterableDataset`` (the class made once, at module level, so workers can unpickle)."""
    cls = globals().get("_IterableCrops")
    if cls is None:
        from torch.utils.data import IterableDataset

        def __init__(self, inner):
            self.inner = inner

        def __iter__(self):
            return iter(self.inner)

        cls = type("_IterableCrops", (IterableDataset,), {"__init__": __init__, "__iter__": __iter__})
        cls.__module__ = __name__
        globals()["_IterableCrops"] = cls
    return cls(inner)


def crop_loader(batches: CropBatches, *, workers: int, pin_memory: bool = False):
    """A DataLoader over :class:`CropBatches` (whole batches per item) with ``workers`` persistent processes;
    ``batches`` itself with no workers."""
    from torch.utils.data import DataLoader

    if workers == 0:
        return batches
    return DataLoader(
        _iterable(batches),
        batch_size=None,
        num_workers=workers,
        persistent_workers=True,
        prefetch_factor=2,
        pin_memory=pin_memory,
    )
