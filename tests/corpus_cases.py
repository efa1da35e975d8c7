"""The cases of the bad-input corpus (see ``corpus.py``): which inputs, through which command, expecting what."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import badfiles as bf
from badfiles import (
    copy_to,
    h5_file,
    header_flip,
    image_file,
    mask_pair,
    text_file,
    truncate_to,
    zero_width_png,
)
from corpus import (
    COORDS,
    FEATS,
    STAIN,
    Case,
    _copy_svs,
    _eval_ok,
    _feats,
    _imported,
    _info_size,
    _same_tiles_as,
    _stained,
    _twins,
    _twins_right,
    _with_afile,
)


# ---------------------------------------------------------------- the cases
def _cases() -> list[Case]:
    cases: list[Case] = []
    formats = {
        "svs": bf.SVS,
        "pyramid-tiff": bf.PYRAMID,
        "jpeg": bf.JPEG,
        "strip-tif": bf.STRIP,
        "qptiff": bf.DATA / "slides" / "vectra-multiplex-if.qptiff",
        "dicom": bf.DATA / "slides" / "prostate-he-dicom-sm.dcm",
        "png": STAIN / "tiatoolbox-target.png",
    }
    # truncations at 10/50/99% of every format: info (and tile for the pyramidal ones)
    for name, src in formats.items():
        for fraction in (0.1, 0.5, 0.99):
            pct = round(fraction * 100)
            cases.append(Case(f"trunc{pct}-{name}/info", "truncated", truncate_to(src, fraction), "info"))
            if name in ("svs", "pyramid-tiff") or (name == "jpeg" and fraction == 0.99):
                cases.append(Case(f"trunc{pct}-{name}/tile", "truncated", truncate_to(src, fraction), "tile"))
        if name in ("jpeg", "png"):
            cases.append(Case(f"trunc50-{name}/stain", "truncated", truncate_to(src, 0.5), "stain"))
    # byte flips inside tiles (level 0, and the 1st level of the pyramid) and in headers
    cases += [
        Case("flip-tile-svs/info", "byte flip", lambda d: bf.flip_tile_bytes(bf.SVS, d), "info"),
        Case("flip-tile-svs/tile", "byte flip", lambda d: bf.flip_tile_bytes(bf.SVS, d), "tile"),
        Case(
            "flip-tile-pyramid/info-deep",
            "byte flip",
            lambda d: bf.flip_tile_bytes(bf.PYRAMID, d),
            "info-deep",
        ),
        Case(
            "flip-lowres-tile-pyramid/tile",
            "byte flip",
            lambda d: bf.flip_tile_bytes(bf.PYRAMID, d, page=4, n=16),
            "tile",
        ),
        Case("flip-header-svs/info", "byte flip", header_flip(bf.SVS), "info"),
        Case("flip-header-pyramid/info", "byte flip", header_flip(bf.PYRAMID), "info"),
        Case("flip-header-jpeg/info", "byte flip", header_flip(bf.JPEG, start=2, n=32), "info"),
        Case(
            "flip-header-png/stain",
            "byte flip",
            header_flip(STAIN / "tiatoolbox-target.png", start=16, n=8),
            "stain",
        ),
        Case("flip-header-h5/import", "byte flip", header_flip(bf.H5, start=0, n=64), "import"),
    ]
    # IFD loops (the hang): in a capped subprocess
    for name, src in (("svs", bf.SVS), ("pyramid-tiff", bf.PYRAMID), ("strip-tif", bf.STRIP)):
        for command in ("info", "tile"):
            cases.append(
                Case(
                    f"ifd-loop-{name}/{command}",
                    "IFD loop",
                    lambda d, s=src: bf.ifd_loop(s, d),
                    command,
                    capped=True,
                )
            )
    # random bytes and zero bytes under every extension
    for suffix in (
        ".svs",
        ".tif",
        ".tiff",
        ".ndpi",
        ".qptiff",
        ".dcm",
        ".jpg",
        ".png",
        ".mrxs",
        ".scn",
        ".bif",
    ):
        cases.append(
            Case(f"random{suffix}/info", "random bytes", lambda d, s=suffix: bf.random_bytes(d, s), "info")
        )
        cases.append(
            Case(f"empty{suffix}/info", "zero bytes", lambda d, s=suffix: bf.zero_bytes(d, s), "info")
        )
    cases += [
        Case("random.svs/tile", "random bytes", lambda d: bf.random_bytes(d, ".svs"), "tile"),
        Case("empty.svs/tissue", "zero bytes", lambda d: bf.zero_bytes(d, ".svs"), "tissue"),
        Case("random.jpg/stain", "random bytes", lambda d: bf.random_bytes(d, ".jpg"), "stain"),
        Case("empty.png/stain", "zero bytes", lambda d: bf.zero_bytes(d, ".png"), "stain"),
        Case("random.h5/import", "random bytes", lambda d: bf.random_bytes(d, ".h5"), "import"),
        Case("empty.h5/import", "zero bytes", lambda d: bf.zero_bytes(d, ".h5"), "import"),
        Case("random.csv/eval-cls", "random bytes", lambda d: bf.random_bytes(d, ".csv"), "eval-cls"),
        Case("random.png/stain-target", "random bytes", lambda d: bf.random_bytes(d, ".png"), "stain-target"),
    ]
    # FIFO, device, directory as a file
    for command in ("info", "tile", "tissue", "stain"):
        cases.append(Case(f"fifo/{command}", "FIFO", lambda d: bf.fifo(d), command))
    cases += [
        Case("dev-null/info", "device", lambda d: Path(os.devnull), "info"),
        Case("dev-null/import", "device", lambda d: Path(os.devnull), "import"),
        Case("folder.svs/info", "directory as file", lambda d: bf.folder_named(d, ".svs"), "info"),
        Case("folder.svs/tile", "directory as file", lambda d: bf.folder_named(d, ".svs"), "tile"),
        Case("folder.png/stain", "directory as file", lambda d: bf.folder_named(d, ".png"), "stain"),
        Case("folder.h5/import", "directory as file", lambda d: bf.folder_named(d, ".h5"), "import"),
    ]
    # huge declared sizes: capped subprocesses
    cases += [
        Case("bomb.jpg/info", "huge declared size", lambda d: bf.jpeg_bomb(d), "info", capped=True),
        Case("bomb.jpg/tissue", "huge declared size", lambda d: bf.jpeg_bomb(d), "tissue", capped=True),
        Case("bomb.png/info", "huge declared size", lambda d: bf.png_bomb(d), "info", capped=True),
        Case("bomb.png/stain", "huge declared size", lambda d: bf.png_bomb(d), "stain", capped=True),
        Case(
            "bomb.png/stain-target",
            "huge declared size",
            lambda d: bf.png_bomb(d),
            "stain-target",
            capped=True,
        ),
        Case("bomb-strip.tif/info", "huge declared size", lambda d: bf.tiff_bomb(d), "info", capped=True),
        Case(
            "bomb-tiled.tif/tile",
            "huge declared size",
            lambda d: bf.tiff_bomb(d, tiled=True),
            "tile",
            capped=True,
        ),
        Case("bomb.h5/import", "huge declared size", lambda d: bf.h5_bomb(d), "import", capped=True),
    ]
    # zero-width, 1x1, all-white images
    white = np.full((600, 800, 3), 255, np.uint8)
    one = np.array([[[150, 60, 160]]], np.uint8)
    cases += [
        Case("zero-width.png/info", "zero-width image", zero_width_png, "info"),
        Case("zero-width.png/stain", "zero-width image", zero_width_png, "stain"),
        Case(
            "one-pixel.png/info",
            "1x1 image",
            image_file("one.png", one),
            "info",
            expect="accepted",
            check=_info_size(1, 1),
        ),
        Case(
            "one-pixel.png/tissue",
            "1x1 image",
            image_file("one.png", one),
            "tissue",
            expect="accepted",
            check=lambda _p, _o, stdout: '"tissue_fraction": 1.0' in stdout,
        ),  # one stained pixel: tissue
        Case("one-pixel.png/stain-target", "1x1 image", image_file("one.png", one), "stain-target"),
        Case(
            "one-pixel.jpg/info",
            "1x1 image",
            image_file("one.jpg", one),
            "info",
            expect="accepted",
            check=_info_size(1, 1),
        ),
        Case("all-white.png/tissue", "all-white", image_file("white.png", white), "tissue"),
        Case("all-white.png/tile", "all-white", image_file("white.png", white), "tile"),
        Case("all-white.png/stain-target", "all-white", image_file("white.png", white), "stain-target"),
        Case(
            "all-white.png/stain",
            "all-white",
            image_file("white.png", white),
            "stain",
            expect="accepted",
            check=_stained,
        ),
    ]
    # unicode, space and dot names: accepted, with the same result as the original file
    for name in ("slide é ü 中文.svs", "with space .svs", "many.dots.in.name.svs", "-starts-with-dash.svs"):
        cases.append(
            Case(
                f"name[{name}]/tile",
                "unusual name",
                lambda d, n=name: bf.copy_as(bf.SVS, d, n),
                "tile",
                expect="accepted",
                check=_same_tiles_as(bf.SVS),
                slow=name != "slide é ü 中文.svs",
            )
        )
    cases.append(
        Case("name[é].jpg/stain", "unusual name", copy_to(STAIN / "stardist-histo.jpg", "é tile.jpg"), "stain",
             expect="accepted", check=_stained)
    )  # fmt: skip
    # malformed HDF5 features
    nan_f, _ = _feats(f=(2, np.nan))
    inf_f, _ = _feats(f=(1, np.inf))
    _, nan_c = _feats(c=(1, np.nan))
    _, neg_c = _feats(c=(3, -256.0))
    cases += [
        Case(
            "h5-nan-features/import",
            "malformed HDF5",
            h5_file("nan.h5", features=nan_f, coords=COORDS),
            "import",
        ),
        Case(
            "h5-inf-features/import",
            "malformed HDF5",
            h5_file("inf.h5", features=inf_f, coords=COORDS),
            "import",
        ),
        Case(
            "h5-nan-coords/import",
            "malformed HDF5",
            h5_file("nanc.h5", features=FEATS, coords=nan_c),
            "import",
        ),
        Case(
            "h5-negative-coords/import",
            "malformed HDF5",
            h5_file("neg.h5", features=FEATS, coords=neg_c),
            "import",
        ),
        Case(
            "h5-complex/import",
            "malformed HDF5",
            h5_file("c.h5", features=FEATS.astype(np.complex64)),
            "import",
        ),
        Case(
            "h5-bytes/import",
            "malformed HDF5",
            h5_file("b.h5", features=np.array([[b"a", b"b"]] * 6)),
            "import",
        ),
        Case("h5-no-features/import", "malformed HDF5", h5_file("none.h5", something=FEATS), "import"),
        Case("h5-1d-features/import", "malformed HDF5", h5_file("1d.h5", features=FEATS[:, 0]), "import"),
        Case(
            "h5-coords-mismatch/import",
            "malformed HDF5",
            h5_file("mm.h5", features=FEATS, coords=COORDS[:4]),
            "import",
        ),
        Case("h5-truncated/import", "truncated", truncate_to(bf.H5, 0.5), "import"),
        Case(
            "h5-real/import",
            "real HDF5",
            copy_to(bf.H5, "real.h5"),
            "import",
            expect="accepted",
            check=_imported(777),
        ),
        Case(
            "h5-non-utf8-names/import",
            "malformed HDF5",
            h5_file("latin.h5", features=FEATS, metadata=np.array([b"caf\xe9.jpg"] * 6)),
            "import",
            expect="accepted",
            check=_imported(6),
        ),
    ]
    # malformed CSV for evaluate classification
    cases += [
        Case("csv-empty/eval-cls", "malformed CSV", text_file("p.csv", ""), "eval-cls"),
        Case(
            "csv-header-only/eval-cls",
            "malformed CSV",
            text_file("p.csv", "id,label,pred,p_a,p_b\n"),
            "eval-cls",
        ),
        Case(
            "csv-missing-column/eval-cls",
            "malformed CSV",
            text_file("p.csv", "id,label\n1,a\n2,b\n"),
            "eval-cls",
        ),
        Case(
            "csv-not-numbers/eval-cls",
            "malformed CSV",
            text_file("p.csv", "id,label,pred,p_a,p_b\n1,a,a,x,y\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-nan-probability/eval-cls",
            "malformed CSV",
            text_file("p.csv", "id,label,pred,p_a,p_b\n1,a,a,nan,0.5\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-not-utf8/eval-cls",
            "malformed CSV",
            text_file("p.csv", b"id,label,pred,p_a,p_b\n1,\xe9,a,0.9,0.1\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-ragged/eval-cls",
            "malformed CSV",
            text_file("p.csv", "id,label,pred,p_a,p_b\n1,a,a,0.9\n2,b,b,0.1,0.9,7\n"),
            "eval-cls",
        ),  # fmt: skip
    ]
    # masks of the wrong size, damaged masks
    cases += [
        Case("mask-wrong-size/eval-seg", "mask of the wrong size", mask_pair((100, 100)), "eval-seg"),
        Case(
            "mask-truncated/eval-seg",
            "truncated",
            mask_pair(None, pred_bytes=b"\x89PNG\r\n\x1a\n\x00\x00"),
            "eval-seg",
        ),
        Case(
            "mask-random/eval-seg",
            "random bytes",
            mask_pair(None, pred_bytes=bytes(range(256)) * 4),
            "eval-seg",
        ),
        Case(
            "mask-same/eval-seg", "real mask", mask_pair(None), "eval-seg", expect="accepted", check=_eval_ok
        ),
    ]
    # the same file name in different folders: two stores, each with its own slide's tiles
    cases.append(
        Case("twins[a/slide.svs, b/slide.svs]/tile", "same name, different folders", _twins, "tile-twins",
             expect="accepted", check=_twins_right)
    )  # fmt: skip
    # outputs that cannot be written
    cases += [
        Case("out-under-a-file/tile", "unwritable output", _with_afile(bf.SVS), "tile-out-under-file"),
        Case("out-not-allowed/tile", "unwritable output", _copy_svs, "tile-out-sys"),
        Case("out-under-a-file/import", "unwritable output", _with_afile(bf.H5), "import-out-under-file"),
    ]
    # GeoJSON through the library (no command reads GeoJSON)
    cases += [
        Case("geojson-garbage/api", "malformed GeoJSON", text_file("a.geojson", "{not json"), "api-geojson"),
        Case(
            "geojson-not-features/api",
            "malformed GeoJSON",
            text_file("a.geojson", '{"type": "Point"}'),
            "api-geojson",
        ),
        Case(
            "geojson-bad-geometry/api",
            "malformed GeoJSON",
            text_file(
                "a.geojson",
                '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                '{"type": "Polygon", "coordinates": "x"}}]}',
            ),
            "api-geojson",
        ),  # fmt: skip
        Case(
            "geojson-not-utf8/api",
            "malformed GeoJSON",
            text_file("a.geojson", b'{"type": "\xff"}'),
            "api-geojson",
        ),
    ]
    return cases


#: the cases the default (fast) suite runs besides every ``info``/``import``/``api`` case: one of each other kind
_FAST = {
    "trunc50-svs/tile", "trunc50-jpeg/stain", "flip-tile-svs/tile", "flip-tile-pyramid/info-deep",
    "ifd-loop-pyramid-tiff/info", "random.svs/tile", "empty.png/stain", "fifo/tile", "folder.png/stain",
    "bomb.jpg/info", "bomb.h5/import", "zero-width.png/info", "all-white.png/stain-target", "one-pixel.png/tissue",
    "mask-wrong-size/eval-seg", "csv-nan-probability/eval-cls", "csv-missing-column/eval-cls",
}  # fmt: skip


def _mark_slow(cases: list[Case]) -> list[Case]:
    for case in cases:
        cheap = case.command in ("info", "import", "api-geojson", "eval-cls") and not case.capped
        if case.id not in _FAST and not cheap:
            case.slow = True
    return cases


CASES = _mark_slow(_cases())
