"""The slide doctor: one plain, JSON-ready record per slide describing it and listing what is wrong with it.

Problem codes (``problems`` is a list of ``{"code", "message"}``):

``unreadable``
    the file cannot be opened or its pixels cannot be decoded (the record then holds only ``path`` and the error).
``missing-mpp``
    no microns per pixel recorded (or only an implausible DPI/volume value, which is ignored).
``implausible-mpp``
    a recorded mpp outside the range of real scans (:data:`~eosin.slide._base.PLAUSIBLE_MPP`).
``anisotropic-mpp``
    x and y mpp differ by more than 1 %.
``mpp-objective-mismatch``
    the objective power and the mpp disagree by more than a factor 1.5 (10 µm / objective is the usual mpp).
``non-pyramidal``
    a single level with a side longer than 10,000 pixels: every thumbnail reads the full image.
``level-downsample-mismatch``
    a level whose size differs by more than a pixel or 1 % from level 0 divided by its downsample.
``damaged-associated-image``
    a label, macro or thumbnail image that cannot be decoded (found only when probing pixels).
``reader-disagreement``
    two whole-slide readers (OpenSlide, tiffslide) both open the file and report different dimensions, levels or
    mpp (found when comparing readers: ``eosin info``, :func:`diagnose_path`).
``corrupt-tiles``
    with ``deep=True``: tiles that do not decode cleanly (every tile of every level is decoded strictly); the
    record's ``corrupt_tiles`` lists them (page, level, tile index, level-0 box, reason).
``fluorescence``
    not brightfield RGB: the channels are shown as a false-colour composite; brightfield steps (tissue detection,
    stain normalization) do not apply as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eosin.errors import EosinError
from eosin.slide._base import PLAUSIBLE_MPP, Slide

__all__ = ["diagnose", "diagnose_path", "probe", "reader_disagreement", "unreadable_record"]

#: readers of whole-slide pyramids whose views of one file can be compared (the plain-image reader sees one page)
WSI_READERS = ("openslide", "tiffslide")

#: a single-level image with a longer side than this should have been saved as a pyramid
NON_PYRAMIDAL_SIDE = 10_000
#: a probe reads the whole coarsest level when it has at most this many pixels, else a few patches
_PROBE_FULL_PIXELS = 16_000_000


def diagnose(
    slide: Slide | str | os.PathLike[str],
    *,
    probe_pixels: bool = False,
    compare_readers: bool | None = None,
    deep: bool = False,
    **open_kwargs: Any,
) -> dict[str, Any]:
    """Describe a slide and list its problems.

    Parameters
    ----------
    slide
        An open :class:`Slide`, or a path (opened with ``open_kwargs``: ``backend=``, ``slide_mpp=``).
    probe_pixels
        Also decode part of the image (the coarsest level, or patches of it including the last corner) to catch
        truncated and corrupted tiles that opening alone does not reveal.
    compare_readers
        Also open the file with the other whole-slide reader (OpenSlide or tiffslide) and report a
        ``reader-disagreement`` when it sees other dimensions, levels or mpp (default: as ``probe_pixels``).
    deep
        Decode every tile of every level strictly (:func:`~eosin.slide.verify_tiles`); damaged ones give a
        ``corrupt-tiles`` problem and are listed in ``corrupt_tiles``.

    Returns
    -------
    dict
        ``path, format, backend, width, height, levels [{width, height, downsample}], mpp_x, mpp_y, mpp_source,
        objective_power, associated_images, channel_names, bounds, problems [{code, message}]``.
    """
    if not isinstance(slide, Slide):
        from eosin.slide._open import open_slide

        with open_slide(slide, **open_kwargs) as opened:
            return diagnose(opened, probe_pixels=probe_pixels, compare_readers=compare_readers, deep=deep)
    record: dict[str, Any] = {
        "path": str(slide.path),
        "format": slide.format,
        "backend": slide.backend,
        "width": slide.width,
        "height": slide.height,
        "levels": [
            {"width": lv.width, "height": lv.height, "downsample": float(lv.downsample)}
            for lv in slide.levels
        ],
        "mpp_x": slide.mpp_x,
        "mpp_y": slide.mpp_y,
        "mpp_source": slide.mpp_source,
        "objective_power": slide.objective_power,
        "associated_images": sorted(slide.associated_images),
        "channel_names": list(slide.channel_names),
        "bounds": list(slide.bounds) if slide.bounds is not None else None,
        "problems": _problems(slide),
    }
    if probe_pixels if compare_readers is None else compare_readers:
        record["problems"] += reader_disagreement(slide)
    if probe_pixels:
        try:
            probe(slide)
        except EosinError as exc:
            record["problems"].insert(
                0, {"code": "unreadable", "message": str(exc), "error": type(exc).__name__}
            )
        record["problems"] += _probe_associated(slide)
    if deep:
        from eosin.slide._verify import verify_tiles

        bad = verify_tiles(slide)
        record["corrupt_tiles"] = [b.to_dict() for b in bad]
        if bad:
            where = "; ".join(
                (
                    f"level {b.level} tile {b.index} at x={b.box[0]}, y={b.box[1]}"
                    if b.box
                    else f"page {b.page}"
                )
                + f" ({b.reason})"
                for b in bad[:3]
            )
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            record["problems"].insert(
                0,
                {
                    "code": "corrupt-tiles",
                    "message": f"{len(bad)} tile(s) do not decode cleanly: {where}{more}. Fix: copy or download "
                    "the slide again, or export it anew from the scanner; reads of those tiles fail.",
                },
            )
    return record


def reader_disagreement(slide: Slide) -> list[dict[str, Any]]:
    """A ``reader-disagreement`` problem when another whole-slide reader opens the file and sees it otherwise.

    Compared: level-0 dimensions, the size of every level, and the level-0 mpp (more than 1 % apart, or known to
    one reader only). A reader that cannot open the file is no disagreement. An mpp override applies to both.
    """
    from eosin.slide._open import open_slide

    if slide.backend not in WSI_READERS:
        return []
    override = slide.mpp_x if slide.mpp_source == "override" else None
    problems = []
    for other in WSI_READERS:
        if other == slide.backend:
            continue
        try:
            with open_slide(slide.path, backend=other, slide_mpp=override) as peer:
                seen = _view(peer)
        except EosinError:
            continue
        mine = _view(slide)
        differ = [k for k in ("dimensions", "levels") if mine[k] != seen[k]]
        if not _same_mpp(mine["mpp"], seen["mpp"]):
            differ.append("mpp")
        if differ:
            problems.append(
                {
                    "code": "reader-disagreement",
                    "message": f"{slide.backend} and {other} read this file differently ({', '.join(differ)}): "
                    f"{slide.backend} {_describe_view(mine)}; {other} {_describe_view(seen)}. Results depend "
                    f"on the reader: check the file in a viewer, or choose one with --backend "
                    f"(this record is {slide.backend}'s).",
                    "readers": {slide.backend: mine, other: seen},
                }
            )
    return problems


def _view(slide: Slide) -> dict[str, Any]:
    return {
        "dimensions": [slide.width, slide.height],
        "levels": [[lv.width, lv.height] for lv in slide.levels],
        "mpp": None if slide.mpp_x is None else round(float(slide.mpp_x), 6),
    }


def _same_mpp(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 0.01 * max(a, b)


def _describe_view(view: dict[str, Any]) -> str:
    w, h = view["dimensions"]
    levels = ", ".join(f"{lw}x{lh}" for lw, lh in view["levels"])
    return f"{w}x{h}, {len(view['levels'])} level(s) [{levels}], mpp {view['mpp']}"


def diagnose_path(path: str | os.PathLike[str], *, deep: bool = False, **open_kwargs: Any) -> dict[str, Any]:
    """:func:`diagnose` with pixel probing that never raises for a bad file: an unopenable or undecodable file
    gives a record whose ``problems`` holds one ``unreadable`` finding with the error and its fix."""
    try:
        return diagnose(path, probe_pixels=True, deep=deep, **open_kwargs)
    except EosinError as exc:
        if exc.exit_code == 2:  # a usage error (unknown backend...) is not a property of the file
            raise
        return unreadable_record(path, exc)


def unreadable_record(path: str | os.PathLike[str], error: BaseException) -> dict[str, Any]:
    """The doctor's record for a file that could not be read."""
    keys = (
        "format",
        "backend",
        "width",
        "height",
        "levels",
        "mpp_x",
        "mpp_y",
        "mpp_source",
        "objective_power",
    )
    keys += ("associated_images", "channel_names", "bounds")
    return {
        "path": str(Path(path)),
        **dict.fromkeys(keys),
        "problems": [{"code": "unreadable", "message": str(error), "error": type(error).__name__}],
    }


def probe(slide: Slide) -> None:
    """Decode a sample of every level: the whole coarsest level when small, else patches at its corners and centre,
    and such patches on the finer levels. Raises :class:`CorruptSlideError` on damage; a sample, not a full check."""
    size = 256
    for level, lv in enumerate(slide.levels):
        ds = lv.downsample
        if level == len(slide.levels) - 1 and lv.width * lv.height <= _PROBE_FULL_PIXELS:
            slide._read_level(level, 0, 0, lv.width, lv.height)
            continue
        for fx in (0.0, 0.5, 1.0):
            for fy in (0.0, 0.5, 1.0):
                x = int(max(0, lv.width - size) * fx)
                y = int(max(0, lv.height - size) * fy)
                w, h = min(size, lv.width - x), min(size, lv.height - y)
                slide._read_level(level, round(x * ds), round(y * ds), w, h)


def _probe_associated(slide: Slide) -> list[dict[str, str]]:
    out = []
    for name in slide.associated_images:
        try:
            slide.associated_images[name]
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean damaged bytes
            message = f"the associated image {name!r} cannot be decoded ({' '.join(str(exc).split())[:200]})."
            out.append({"code": "damaged-associated-image", "message": message})
    return out


def _problems(slide: Slide) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    fix = "give the true level-0 resolution with --slide-mpp X for mpp-based work (tiling at an mpp)"
    lo, hi = PLAUSIBLE_MPP
    if slide.mpp_x is None or slide.mpp_y is None:
        ignored = slide.properties.get("eosin.ignored-mpp")
        why = f" (it records {ignored}, which is not a scan resolution, so it is ignored)" if ignored else ""
        add("missing-mpp", f"the slide does not record its microns per pixel{why}; {fix}.")
    else:
        if slide.mpp_source != "override" and not (lo <= slide.mpp_x <= hi and lo <= slide.mpp_y <= hi):
            add(
                "implausible-mpp",
                f"the slide claims {slide.mpp_x:.4g} x {slide.mpp_y:.4g} µm/px, outside {lo}-{hi} µm/px of real "
                f"scans; {fix}.",
            )
        if abs(slide.mpp_x - slide.mpp_y) > 0.01 * max(slide.mpp_x, slide.mpp_y):
            add(
                "anisotropic-mpp",
                f"pixels are not square ({slide.mpp_x:.4g} x {slide.mpp_y:.4g} µm/px); regions are resampled with "
                "their mean.",
            )
        if slide.objective_power and slide.objective_power > 0:
            expected = 10.0 / slide.objective_power
            mean = (slide.mpp_x + slide.mpp_y) / 2
            if not (expected / 1.5 <= mean <= expected * 1.5):
                add(
                    "mpp-objective-mismatch",
                    f"{mean:.4g} µm/px does not fit the recorded {slide.objective_power:g}x objective (~{expected:.3g} "
                    "µm/px expected); one of them is wrong: check the scanner's settings, or override with --slide-mpp.",
                )
    if len(slide.levels) == 1 and max(slide.width, slide.height) > NON_PYRAMIDAL_SIDE:
        add(
            "non-pyramidal",
            f"a single {slide.width}x{slide.height} level with no pyramid: thumbnails and low-resolution reads decode "
            "the whole image; convert it to a pyramidal tiled TIFF (e.g. vips tiffsave --tile --pyramid) for speed.",
        )
    base = slide.levels[0]
    for i, lv in enumerate(slide.levels[1:], start=1):
        ew, eh = base.width / lv.downsample, base.height / lv.downsample
        if abs(lv.width - ew) > max(1.0, 0.01 * ew) or abs(lv.height - eh) > max(1.0, 0.01 * eh):
            add(
                "level-downsample-mismatch",
                f"level {i} is {lv.width}x{lv.height} but level 0 / its downsample {lv.downsample:.4g} gives "
                f"{ew:.0f}x{eh:.0f}; regions read from it may be shifted or stretched.",
            )
    if not slide.is_brightfield:
        add(
            "fluorescence",
            f"{len(slide.channel_names)} fluorescence channels ({', '.join(slide.channel_names)}), shown as a "
            "false-colour RGB composite; brightfield steps (tissue detection, stain normalization) are not meant for it.",
        )
    return out
