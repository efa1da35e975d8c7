"""Size limits checked against what a file *declares* before anything is decoded or allocated.

A 600-byte JPEG can declare 65,000 x 65,000 pixels (12.7 GB once decoded); a 1.4 KB HDF5 file can declare 80 GB
of features. Readers ask these functions first and refuse with :class:`~eosin.errors.InputTooLargeError`, whose
message names the file, the declared size and the setting that raises the limit:

``EOSIN_MAX_IMAGE_PIXELS``: pixels of an image decoded whole (plain JPEG/PNG/BMP, strip TIFF, stain target, mask),
default 500 million (about 1.5 GB as RGB). Tiled slides are read tile by tile and are not limited by it.
``EOSIN_MAX_ARRAY_BYTES``: bytes of one array read whole from a file (HDF5 features), default 8 GiB.

Pillow's own decompression-bomb guard stays on: :func:`open_image` raises it to eosin's limit only for its own
call, under a lock, and puts the previous value back.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eosin.errors import CorruptSlideError, InputTooLargeError, UsageError

__all__ = [
    "DEFAULT_MAX_ARRAY_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "check_array_bytes",
    "check_image_pixels",
    "decode_image",
    "max_array_bytes",
    "max_image_pixels",
    "open_image",
]

DEFAULT_MAX_IMAGE_PIXELS = 500_000_000
DEFAULT_MAX_ARRAY_BYTES = 8 * 1024**3

_PILLOW_LOCK = threading.Lock()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(
            f"{name}={os.environ[name]!r} is not a positive whole number.",
            fix=f"set {name} to a number such as {default} or unset it",
        )
    return value


def max_image_pixels() -> int:
    """Largest number of pixels of an image decoded whole (``EOSIN_MAX_IMAGE_PIXELS``)."""
    return _env_int("EOSIN_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def max_array_bytes() -> int:
    """Largest array, in bytes, read whole from a file (``EOSIN_MAX_ARRAY_BYTES``)."""
    return _env_int("EOSIN_MAX_ARRAY_BYTES", DEFAULT_MAX_ARRAY_BYTES)


def check_image_pixels(path: str | os.PathLike[str], width: int, height: int) -> None:
    """Refuse an image whose declared ``width`` x ``height`` is above :func:`max_image_pixels` (or not positive)."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise CorruptSlideError(
            f"the file declares an image of {width} x {height} pixels (no pixels).",
            path=path,
            fix="the header is damaged or the export failed: export the image again",
        )
    limit = max_image_pixels()
    if width * height > limit:
        raise _too_many_pixels(path, width, height, limit)


def _too_many_pixels(path, width: int | None, height: int | None, limit: int) -> InputTooLargeError:
    n = width * height if height is not None and width is not None else width
    size = f"{width:,} x {height:,} pixels, " if height is not None else ""
    what = f"{size}{n / 1e6:,.0f} megapixels (about {n * 3 / 1e9:,.1f} GB decoded)" if n else "more pixels"
    return InputTooLargeError(
        f"the file declares {what}, above the limit of {limit:,} pixels for an image decoded whole.",
        path=path,
        fix="if the image is genuine, raise the limit (EOSIN_MAX_IMAGE_PIXELS="
        f"{_round_up(n or limit * 2)}) or convert it to a pyramidal tiled TIFF (vips tiffsave --tile --pyramid); "
        "otherwise its header is forged or damaged",
    )


def check_array_bytes(path: str | os.PathLike[str], name: str, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a dataset ``name`` of ``path`` whose declared ``shape`` needs more than :func:`max_array_bytes`."""
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * int(itemsize)
    limit = max_array_bytes()
    if nbytes > limit:
        raise InputTooLargeError(
            f"'{name}' declares shape {tuple(int(s) for s in shape)} ({nbytes / 1e9:,.1f} GB), above the limit of "
            f"{limit / 1e9:,.1f} GB for one array read whole.",
            path=path,
            fix=f"if the file is genuine, raise the limit (EOSIN_MAX_ARRAY_BYTES={_round_up(nbytes)}); "
            "otherwise the file is forged or damaged",
        )


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str]) -> Iterator[Any]:
    """``PIL.Image.open`` with the declared size checked first; damaged or unreadable files as typed errors.

    The image is not decoded yet (Pillow decodes on ``load``/``convert``); decoding errors after this are the
    caller's to turn into :class:`~eosin.errors.CorruptSlideError` (see :func:`decode_image`).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    limit = max_image_pixels()
    with _PILLOW_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice it; eosin's own check below is the limit
        Image.MAX_IMAGE_PIXELS = max(limit, previous or 0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
        except Image.DecompressionBombError as exc:  # more than twice the limit: Pillow refuses first
            import re

            m = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_many_pixels(path, int(m.group(1)) if m else None, None, limit) from None
        except UnidentifiedImageError:
            raise CorruptSlideError(
                "not an image Pillow can read (unknown format or damaged header).",
                path=path,
                fix="give a PNG, JPEG, TIFF or BMP image; if it is one, export it again",
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptSlideError(
                f"cannot read the image header ({_one_line(exc)}).",
                path=path,
                fix="the file is probably truncated or damaged: export or copy it again",
            ) from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    try:
        check_image_pixels(path, *im.size)
        yield im
    finally:
        im.close()


def decode_image(path: str | os.PathLike[str], *, mode: str = "RGB") -> Any:
    """The whole image of ``path`` as a numpy array in Pillow ``mode`` (``"RGB"``, ``"L"``...), fully checked.

    Declared size first (:func:`check_image_pixels`), then the decode with truncated files refused: Pillow's
    ``LOAD_TRUNCATED_IMAGES`` is not used, so a JPEG or PNG that ends early is a
    :class:`~eosin.errors.CorruptSlideError`, never an image filled with grey.
    """
    import numpy as np

    with open_image(path) as im:
        try:
            im.load()
            return np.asarray(im.convert(mode) if im.mode != mode else im)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptSlideError(
                f"the image cannot be decoded ({_one_line(exc)}).",
                path=path,
                fix="the file is probably truncated or damaged: export or copy it again",
            ) from None
        except MemoryError:
            raise InputTooLargeError(
                f"not enough memory to decode {im.size[0]:,} x {im.size[1]:,} pixels.",
                path=path,
                fix="lower EOSIN_MAX_IMAGE_PIXELS so such files are refused up front, or convert the image to "
                "a pyramidal tiled TIFF",
            ) from None


def _round_up(n: int) -> int:
    """A round number at least ``n`` (for the suggested setting)."""
    step = 10 ** max(len(str(n)) - 1, 0)
    return -(-n // step) * step


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:200]
