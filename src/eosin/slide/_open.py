"""Open any slide or image as a :class:`~eosin.slide.Slide`: sniff the file, try the backends that fit, in order.

Errors are typed and say what to do: a missing path is :class:`~eosin.errors.SlideNotFoundError`, a file that is
not a slide or image is :class:`~eosin.errors.UnsupportedFormatError`, and a file whose signature says it is a
TIFF, DICOM, JPEG or PNG but that no backend can read is :class:`~eosin.errors.CorruptSlideError`.
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

from eosin.errors import (
    CorruptSlideError,
    InputTooLargeError,
    SlideNotFoundError,
    UnknownNameError,
    UnsupportedFormatError,
    UsageError,
)
from eosin.slide._base import Slide
from eosin.slide._mpp import SlideMpp

__all__ = ["list_backends", "open_slide"]

# backend name -> module:class
_BACKENDS = {
    "openslide": "eosin.slide._openslide:OpenSlideSlide",
    "tiffslide": "eosin.slide._tiffslide:TiffSlideSlide",
    "dicom": "eosin.slide._dicom:DicomSlide",
    "image": "eosin.slide._image:ImageSlide",
}

#: formats OpenSlide reads whose files are not TIFFs (MIRAX index, Hamamatsu VMS/VMU)
_OPENSLIDE_ONLY = {".mrxs", ".vms", ".vmu"}
_SUPPORTED_TEXT = (
    "TIFF-based slides (svs, ndpi, scn, bif, tif/tiff, qptiff, ome.tiff), MIRAX (mrxs), DICOM, PNG, JPEG"
)


def list_backends() -> list[str]:
    """Names of the readers :func:`open_slide` can use, in the order it tries them for a TIFF."""
    return list(_BACKENDS)


def open_slide(
    path: str | os.PathLike[str], *, backend: str | None = None, slide_mpp: float | SlideMpp | None = None
) -> Slide:
    """Open a whole-slide image or a plain image.

    Parameters
    ----------
    path
        A slide file, a plain image, or a folder holding one DICOM whole-slide series.
    backend
        Force one reader: ``openslide``, ``tiffslide``, ``dicom`` or ``image``. Default: chosen from the file's
        signature and extension (OpenSlide first for TIFFs, then tiffslide, then the plain-image reader).
    slide_mpp
        Level-0 microns per pixel to use instead of the file's own value (missing or wrong); sets
        ``mpp_source="override"``. A :class:`~eosin.slide.SlideMpp` chooses per slide: a value stated for this
        slide, else its default only when the slide records no plausible mpp (unless forced).

    Returns
    -------
    Slide

    Raises
    ------
    SlideNotFoundError, UnsupportedFormatError, CorruptSlideError
        The path does not exist; it is not a slide or image; it is one but damaged.

    Examples
    --------
    >>> slide = open_slide("CMU-1-Small-Region.svs")  # doctest: +SKIP
    >>> slide.dimensions, slide.mpp  # doctest: +SKIP
    ((2220, 2967), (0.499, 0.499))
    """
    path = Path(path)
    if backend is not None and backend not in _BACKENDS:
        raise UnknownNameError("backend", backend, _BACKENDS)
    if (
        slide_mpp is not None
        and not isinstance(slide_mpp, SlideMpp)
        and not (isinstance(slide_mpp, (int, float)) and slide_mpp > 0 and math.isfinite(slide_mpp))
    ):
        raise UsageError(f"slide_mpp must be a positive number of microns per pixel, got {slide_mpp!r}.")
    if not path.exists():
        raise SlideNotFoundError("no such file or folder.", path=path, fix="check the path and its spelling")
    special = special_file(path)
    if special:
        raise UnsupportedFormatError(
            f"this is {special}, not a slide file (reading it would block or give nothing).",
            path=path,
            fix="give the slide file itself (copy it to disk first if it comes through a pipe)",
        )
    _refuse_vsi(path)
    kind = sniff(path)
    if kind == "empty":
        raise CorruptSlideError(
            "the file is empty (0 bytes).",
            path=path,
            fix="copy or download the slide again; the copy was interrupted",
        )
    if kind == "tiff":
        from eosin.slide._tiff_check import check_tiff_structure

        check_tiff_structure(path)  # an IFD loop or a truncated pyramid, before any reader can spin on it
    candidates = [backend] if backend else _candidates(path, kind)
    if not candidates:
        raise UnsupportedFormatError(
            "this is not a slide or image eosin can read.",
            path=path,
            fix=f"give a slide in a supported format ({_SUPPORTED_TEXT})",
        )
    errors: list[str] = []
    for name in candidates:
        cls = _backend_class(name)
        try:
            slide = cls.open(path)
        except InputTooLargeError:
            raise  # a declared size over the limit: the same for every reader
        except (CorruptSlideError, UnsupportedFormatError) as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        except Exception as exc:  # noqa: BLE001 - any library error is summarised, never a traceback
            errors.append(f"{name}: {_one_line(exc)}")
            continue
        if isinstance(slide_mpp, SlideMpp):
            slide_mpp = slide_mpp.resolve(path, slide.mpp_problem())
        slide.open_kwargs = {"backend": name, "slide_mpp": slide_mpp}
        if slide_mpp is not None:
            slide.mpp_x = slide.mpp_y = float(slide_mpp)
            slide.mpp_source = "override"
        return slide
    detail = "; ".join(errors)
    if backend:
        raise UnsupportedFormatError(
            f"the {backend} reader cannot open it ({detail}).",
            path=path,
            fix="leave out --backend to let eosin choose, or pick another: " + ", ".join(_BACKENDS),
        )
    if kind in ("tiff", "dicom", "jpeg", "png", "dicom-folder") or path.suffix.lower() in _OPENSLIDE_ONLY:
        raise CorruptSlideError(
            f"it looks like a {kind.replace('-folder', ' folder')} file but cannot be read ({detail}).",
            path=path,
            fix="the file is probably truncated or damaged: copy or download it again, or export it anew from the scanner",
        )
    raise UnsupportedFormatError(
        f"this is not a slide or image eosin can read ({detail}).",
        path=path,
        fix=f"give a slide in a supported format ({_SUPPORTED_TEXT})",
    )


#: bfconvert (Bio-Formats) turns a VSI scan into a pyramidal OME-TIFF that eosin reads
_VSI_FIX = (
    "convert it to a pyramidal OME-TIFF and give eosin that file: with Bio-Formats, bfconvert -noflat "
    "-pyramid-resolutions 6 -pyramid-scale 2 -tilex 512 -tiley 512 -compression JPEG {name} {stem}.ome.tiff "
    "(or open it in QuPath and export it as OME-TIFF)"
)


def _refuse_vsi(path: Path) -> None:
    """Olympus/Evident VSI: the ``.vsi`` TIFF container holds only an overview; the scan's pyramid is in
    ``_<name>_/stackN/frame_t.ets`` beside it, in a format no installed reader decodes. Refuse, saying so."""
    suffix = path.suffix.lower()
    if suffix not in (".vsi", ".ets"):
        return
    if suffix == ".ets":
        vsi = path.parent.parent.parent / (path.parent.parent.name.strip("_") + ".vsi")
        raise UnsupportedFormatError(
            "an Olympus/Evident VSI image file (.ets): one level set of a VSI scan, which eosin cannot read.",
            path=path,
            fix=_VSI_FIX.format(name=vsi.name, stem=vsi.stem),
        )
    folder = path.parent / f"_{path.stem}_"
    stacks = sorted(folder.glob("stack*/*.ets")) if folder.is_dir() else []
    where = (
        f"its scan is in {folder.name}/ ({', '.join(str(p.relative_to(folder)) for p in stacks[:3])})"
        if stacks
        else f"its scan belongs in a folder {folder.name}/stackN/ beside it, which is missing here"
    )
    raise UnsupportedFormatError(
        f"an Olympus/Evident VSI slide: the .vsi file holds only a small overview image and {where}, "
        "in a format eosin cannot read (it would otherwise show the overview as if it were the slide).",
        path=path,
        fix=_VSI_FIX.format(name=path.name, stem=path.stem),
    )


def special_file(path: Path) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (a FIFO, a device, a socket), else None."""
    import stat

    mode = path.stat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def sniff(path: Path) -> str:
    """What a file's leading bytes say it is: ``tiff``, ``dicom``, ``jpeg``, ``png``, ``empty``, ``dicom-folder``,
    ``folder`` or ``other``."""
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return "dicom-folder" if files and all(sniff(p) == "dicom" for p in files[:4]) else "folder"
    with open(path, "rb") as fh:
        head = fh.read(132)
    if not head:
        return "empty"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "other"


def _candidates(path: Path, kind: str) -> list[str]:
    suffix = path.suffix.lower()
    if kind in ("dicom", "dicom-folder"):
        return ["dicom"]
    if kind == "tiff":
        if suffix in (".qptiff",) or path.name.lower().endswith((".ome.tif", ".ome.tiff")):
            return ["tiffslide", "image"]  # OpenSlide reads neither multichannel QPTIFF nor OME series well
        return ["openslide", "tiffslide", "image"]
    if kind in ("jpeg", "png"):
        return ["image"]
    if kind == "other" and suffix in _OPENSLIDE_ONLY:
        return ["openslide"]
    return []


def _backend_class(name: str):
    module, attr = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
