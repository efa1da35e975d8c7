"""Reading segmentation masks for evaluation: image masks, Aperio XML polygons, and pairing folders by file stem."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from eosin.errors import CorruptSlideError, UnsupportedFormatError, UsageError
from eosin.evaluate._seg_overlap import label_instances

__all__ = ["LABEL_MODES", "MASK_SUFFIXES", "mask_separates_instances", "pair_masks", "read_aperio_xml", "read_mask"]

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_PRED_LAYOUT = ("instances.png", "mask.png")  # what ``eosin segment`` writes in DIR/<stem>/, preferred first


#: PIL modes of single-channel images read as instance labels (16 and 32 bits); 8-bit masks are binary
LABEL_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def mask_separates_instances(path: str | os.PathLike[str]) -> bool:
    """Whether a mask file tells touching objects apart: Aperio XML polygons and 16/32-bit label images do; an
    8-bit (binary) mask does not (its connected components merge objects that touch)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return True
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode in LABEL_MODES
    except OSError:
        return False  # read_mask reports the file


def read_mask(path: str | os.PathLike[str], *, threshold: int = 127) -> np.ndarray:
    """Instance labels of a mask image (PNG, JPEG or TIFF).

    16- and 32-bit single-channel images are instance labels and are returned as they are (0 = background).
    8-bit images (grey, RGB or with alpha, reduced to grey) are binary masks: foreground is ``value > threshold``
    (``value > 0`` when the image holds only 0 and 1), and the instances are its 8-connected components.

    Parameters
    ----------
    path
        The mask file.
    threshold
        Grey level above which an 8-bit pixel is foreground (JPEG masks are not exactly 0/255).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` int32 labels.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode in LABEL_MODES:
                labels = np.asarray(img).astype(np.int64)
                if labels.size and labels.min() < 0:
                    raise UsageError("instance labels are negative.", path=path, fix="write labels >= 0")
                return labels.astype(np.int32)
            grey = np.asarray(img if img.mode == "L" else img.convert("L"))
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(
            "not an image eosin can read as a mask.", path=path, fix="save masks as PNG, JPEG or TIFF"
        ) from exc
    except FileNotFoundError:
        raise
    except OSError as exc:  # truncated or damaged file
        raise CorruptSlideError(
            f"cannot decode the mask ({exc}).", path=path, fix="re-export the mask"
        ) from exc
    foreground = grey > 0 if grey.max(initial=0) <= 1 else grey > threshold
    return label_instances(foreground)


def read_aperio_xml(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """Instance labels from an Aperio ImageScope XML file of polygons (``Region/Vertices/Vertex X Y``).

    Each region with at least three vertices becomes one instance, numbered 1.. in file order; a pixel is inside
    a polygon when its centre is (``skimage.draw.polygon``), and where polygons overlap the later one wins.
    This is how the MoNuSeg nucleus annotations are stored.

    Parameters
    ----------
    path
        The XML file.
    shape
        ``(rows, columns)`` of the image the annotations belong to; vertices outside are clipped.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` int32 labels, 0 for background.
    """
    from skimage.draw import polygon

    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CorruptSlideError(
            f"not valid XML ({exc}).", path=path, fix="re-export the annotations"
        ) from exc
    labels = np.zeros(shape, np.int32)
    n = 0
    for region in root.iter("Region"):
        try:
            xy = np.array([(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")])
        except (TypeError, ValueError) as exc:
            raise CorruptSlideError(
                f"region {region.get('Id')!r} has a vertex without numeric X and Y.", path=path
            ) from exc
        if len(xy) < 3:
            continue
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape=shape)
        n += 1
        labels[rr, cc] = n
    return labels


def _stems(folder: Path, *, suffixes: tuple[str, ...], layout: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in suffixes:
            stem, path = entry.stem, entry
        elif layout and entry.is_dir():
            path = next((entry / name for name in _PRED_LAYOUT if (entry / name).is_file()), None)
            if path is None:
                continue
            stem = entry.name
        else:
            continue
        if stem in found:
            raise UsageError(
                f"two masks for {stem!r}: {found[stem].name} and {path.name}.",
                path=folder,
                fix="keep one mask per image",
            )
        found[stem] = path
    return found


def pair_masks(
    pred_dir: str | os.PathLike[str], truth_dir: str | os.PathLike[str]
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """Pair predicted and true masks by file stem.

    ``pred_dir`` holds mask images, or one folder per image with ``instances.png`` or ``mask.png`` in it (what
    ``eosin segment`` writes; the folder name is the stem). ``truth_dir`` holds mask images or Aperio XML files.

    Returns
    -------
    pairs, pred_only, truth_only
        ``(stem, pred path, truth path)`` sorted by stem, and the files that have no partner.
    """
    folders = {"prediction": Path(pred_dir), "truth": Path(truth_dir)}
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise UsageError(f"the {kind} folder does not exist.", path=folder, fix="pass a folder of masks")
    pred = _stems(folders["prediction"], suffixes=MASK_SUFFIXES, layout=True)
    truth = _stems(folders["truth"], suffixes=(*MASK_SUFFIXES, ".xml"), layout=False)
    pairs = [(stem, pred[stem], truth[stem]) for stem in sorted(pred.keys() & truth.keys())]
    pred_only = [pred[s] for s in sorted(pred.keys() - truth.keys())]
    truth_only = [truth[s] for s in sorted(truth.keys() - pred.keys())]
    return pairs, pred_only, truth_only
