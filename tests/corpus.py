"""The bad-input corpus of issue 13: every kind of damaged or unusual input, built at test time from the real
sample files, each run through the commands that take it.

``CASES`` lists them (built lazily, nothing binary is committed). :func:`observe` runs one case and classifies
what happened: ``refused`` (a typed one-line error with a fix), ``accepted`` (exit 0 and the right result), or a
defect: ``traceback``, ``hang``, ``runaway memory``, ``silently wrong`` (exit 0 where the input should have been
refused, or a wrong result), ``partial output`` (a refused input that left files behind).

``python tests/corpus.py`` runs the whole corpus (slow cases included) and rewrites the table in
docs/reliability.md between its ``corpus-table`` markers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import badfiles as bf

ROOT = Path(__file__).resolve().parent.parent
STAIN = bf.DATA / "stain"
GLAS = bf.DATA / "segmentation" / "glas"
GB = 1024**3

#: outputs a refused input may leave on purpose: the tissue masks of a slide without tissue ("so you can look")
ALLOWED_AFTER_REFUSAL = {"tissue.png", "pen.png", "overlay.png"}


@dataclass
class Case:
    """One input through one command. ``build(folder) -> path``; ``argv(path, out) -> list``."""

    id: str
    kind: str
    build: Callable[[Path], Path]
    command: str
    expect: str = "refused"  # or "accepted"
    check: Callable[[Path, Path, str], bool] | None = None  # accepted: (input, out, stdout) -> right result?
    capped: bool = False  # run in a subprocess with a time and memory cap (hangs, bombs)
    slow: bool = False
    tags: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- commands
def argv_for(command: str, path: Path, out: Path) -> list[str]:
    p, o = str(path), str(out)
    return {
        "info": ["info", p],
        "info-deep": ["info", "--deep", p],
        "tissue": ["tissue", p, "--out", o, "-q", "--workers", "0"],
        "tile": ["tile", p, "--mpp", "1", "--slide-mpp", "0.5", "--out", o, "-q", "--workers", "0"],
        "stain": ["stain", p, "--target", str(STAIN / "tiatoolbox-target.png"), "--out", o],
        "stain-target": ["stain", str(STAIN / "stardist-histo.jpg"), "--target", p, "--out", o],
        "import": ["import", "features", p, "--store", str(out / "store.zarr")],
        "eval-seg": ["evaluate", "segmentation", p, str(out.parent / "truth")],
        "eval-cls": ["evaluate", "classification", p],
    }[command]


# ---------------------------------------------------------------- builders
def _copy(src: Path, name: str):
    return lambda d: bf.copy_as(src, d, name)


def _trunc(src: Path, fraction: float):
    return lambda d: bf.truncated(src, d, fraction)


def _header_flip(src: Path, start: int = 8, n: int = 64):
    def build(d: Path) -> Path:
        data = bytearray(src.read_bytes())
        data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
        path = d / f"hflip-{src.name}"
        path.write_bytes(bytes(data))
        return path

    return build


def _image(name: str, rgb: np.ndarray):
    return lambda d: bf.image(d, name, rgb)


def _zero_width_png(d: Path) -> Path:
    import struct
    import zlib

    path = bf.png_bomb(d, name="zero-width.png")
    data = bytearray(path.read_bytes())
    data[16:20] = struct.pack(">I", 0)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _h5(name: str, **datasets):
    def build(d: Path) -> Path:
        import h5py

        path = d / name
        with h5py.File(path, "w") as handle:
            for key, value in datasets.items():
                handle[key] = value
        return path

    return build


def _text(name: str, text: str | bytes):
    def build(d: Path) -> Path:
        path = d / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return build


def _masks(pred_shape: tuple[int, int] | None, *, pred_bytes: bytes | None = None):
    """A pred folder with one mask against a truth folder (``out.parent / truth``) holding the real GlaS mask."""

    def build(d: Path) -> Path:
        from PIL import Image

        truth = d / "truth"
        truth.mkdir(exist_ok=True)
        shutil.copyfile(GLAS / "masks" / "testA_25.jpg", truth / "testA_25.jpg")
        pred = d / "pred"
        pred.mkdir(exist_ok=True)
        if pred_bytes is not None:
            (pred / "testA_25.png").write_bytes(pred_bytes)
        else:
            with Image.open(GLAS / "masks" / "testA_25.jpg") as im:
                mask = np.asarray(im.convert("L"))
            if pred_shape is not None:
                mask = np.asarray(Image.fromarray(mask).resize(pred_shape[::-1]))
            Image.fromarray(mask).save(pred / "testA_25.png")
        return pred

    return build


FEATS = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
COORDS = np.arange(12, dtype=np.int64).reshape(6, 2) * 256


def _feats(**change):
    feats, coords = FEATS.astype(np.float64), COORDS.astype(np.float64)
    for key, (row, value) in change.items():
        (feats if key == "f" else coords)[row, 0] = value
    return feats, coords


# ---------------------------------------------------------------- checks of accepted inputs
def _same_tiles_as(original: Path):
    def check(_path: Path, out: Path, stdout: str) -> bool:
        records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        want = _reference_tiles(original)
        return len(records) == 1 and records[0]["n_tiles"] == want

    return check


_REFERENCE: dict[str, int] = {}


def _reference_tiles(original: Path) -> int:
    """n_tiles of the original slide (the same command, computed once per session)."""
    key = str(original)
    if key not in _REFERENCE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            code, out, _ = run_inprocess(argv_for("tile", original, Path(tmp) / "o"))
            assert code == 0, out
            _REFERENCE[key] = json.loads(out.splitlines()[-1])["n_tiles"]
    return _REFERENCE[key]


def _info_size(width: int, height: int):
    def check(_path: Path, _out: Path, stdout: str) -> bool:
        return (
            f"{width} x {height} px" in stdout and "problems:    none" in stdout or "unreadable" not in stdout
        )

    return check


def _imported(rows: int):
    def check(_path: Path, out: Path, _stdout: str) -> bool:
        from eosin.io import SlideStore

        store = SlideStore.open(out / "store.zarr")
        (key,) = store.keys("features")
        return np.asarray(store.read_group("features", key)["features"]).shape[0] == rows

    return check


def _stained(_path: Path, out: Path, stdout: str) -> bool:
    return len(list(out.glob("*.png"))) == 1 and '"method": "macenko"' in stdout


def _eval_ok(_path: Path, _out: Path, stdout: str) -> bool:
    overall = next(line for line in stdout.splitlines() if line.startswith("overall"))
    return overall.split()[1:3] == ["1.000", "1.000"]  # a mask against itself: Dice and IoU 1


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
            cases.append(Case(f"trunc{pct}-{name}/info", "truncated", _trunc(src, fraction), "info"))
            if name in ("svs", "pyramid-tiff") or (name == "jpeg" and fraction == 0.99):
                cases.append(Case(f"trunc{pct}-{name}/tile", "truncated", _trunc(src, fraction), "tile"))
        if name in ("jpeg", "png"):
            cases.append(Case(f"trunc50-{name}/stain", "truncated", _trunc(src, 0.5), "stain"))
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
        Case("flip-header-svs/info", "byte flip", _header_flip(bf.SVS), "info"),
        Case("flip-header-pyramid/info", "byte flip", _header_flip(bf.PYRAMID), "info"),
        Case("flip-header-jpeg/info", "byte flip", _header_flip(bf.JPEG, start=2, n=32), "info"),
        Case(
            "flip-header-png/stain",
            "byte flip",
            _header_flip(STAIN / "tiatoolbox-target.png", start=16, n=8),
            "stain",
        ),
        Case("flip-header-h5/import", "byte flip", _header_flip(bf.H5, start=0, n=64), "import"),
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
        Case("zero-width.png/info", "zero-width image", _zero_width_png, "info"),
        Case("zero-width.png/stain", "zero-width image", _zero_width_png, "stain"),
        Case(
            "one-pixel.png/info",
            "1x1 image",
            _image("one.png", one),
            "info",
            expect="accepted",
            check=_info_size(1, 1),
        ),
        Case(
            "one-pixel.png/tissue",
            "1x1 image",
            _image("one.png", one),
            "tissue",
            expect="accepted",
            check=lambda _p, _o, stdout: '"tissue_fraction": 1.0' in stdout,
        ),  # one stained pixel: tissue
        Case("one-pixel.png/stain-target", "1x1 image", _image("one.png", one), "stain-target"),
        Case(
            "one-pixel.jpg/info",
            "1x1 image",
            _image("one.jpg", one),
            "info",
            expect="accepted",
            check=_info_size(1, 1),
        ),
        Case("all-white.png/tissue", "all-white", _image("white.png", white), "tissue"),
        Case("all-white.png/tile", "all-white", _image("white.png", white), "tile"),
        Case("all-white.png/stain-target", "all-white", _image("white.png", white), "stain-target"),
        Case(
            "all-white.png/stain",
            "all-white",
            _image("white.png", white),
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
        Case("name[é].jpg/stain", "unusual name", _copy(STAIN / "stardist-histo.jpg", "é tile.jpg"), "stain",
             expect="accepted", check=_stained)
    )  # fmt: skip
    # malformed HDF5 features
    nan_f, _ = _feats(f=(2, np.nan))
    inf_f, _ = _feats(f=(1, np.inf))
    _, nan_c = _feats(c=(1, np.nan))
    _, neg_c = _feats(c=(3, -256.0))
    cases += [
        Case(
            "h5-nan-features/import", "malformed HDF5", _h5("nan.h5", features=nan_f, coords=COORDS), "import"
        ),
        Case(
            "h5-inf-features/import", "malformed HDF5", _h5("inf.h5", features=inf_f, coords=COORDS), "import"
        ),
        Case(
            "h5-nan-coords/import", "malformed HDF5", _h5("nanc.h5", features=FEATS, coords=nan_c), "import"
        ),
        Case(
            "h5-negative-coords/import",
            "malformed HDF5",
            _h5("neg.h5", features=FEATS, coords=neg_c),
            "import",
        ),
        Case(
            "h5-complex/import", "malformed HDF5", _h5("c.h5", features=FEATS.astype(np.complex64)), "import"
        ),
        Case(
            "h5-bytes/import", "malformed HDF5", _h5("b.h5", features=np.array([[b"a", b"b"]] * 6)), "import"
        ),
        Case("h5-no-features/import", "malformed HDF5", _h5("none.h5", something=FEATS), "import"),
        Case("h5-1d-features/import", "malformed HDF5", _h5("1d.h5", features=FEATS[:, 0]), "import"),
        Case(
            "h5-coords-mismatch/import",
            "malformed HDF5",
            _h5("mm.h5", features=FEATS, coords=COORDS[:4]),
            "import",
        ),
        Case("h5-truncated/import", "truncated", _trunc(bf.H5, 0.5), "import"),
        Case(
            "h5-real/import",
            "real HDF5",
            _copy(bf.H5, "real.h5"),
            "import",
            expect="accepted",
            check=_imported(777),
        ),
        Case(
            "h5-non-utf8-names/import",
            "malformed HDF5",
            _h5("latin.h5", features=FEATS, metadata=np.array([b"caf\xe9.jpg"] * 6)),
            "import",
            expect="accepted",
            check=_imported(6),
        ),
    ]
    # malformed CSV for evaluate classification
    cases += [
        Case("csv-empty/eval-cls", "malformed CSV", _text("p.csv", ""), "eval-cls"),
        Case(
            "csv-header-only/eval-cls", "malformed CSV", _text("p.csv", "id,label,pred,p_a,p_b\n"), "eval-cls"
        ),
        Case(
            "csv-missing-column/eval-cls", "malformed CSV", _text("p.csv", "id,label\n1,a\n2,b\n"), "eval-cls"
        ),
        Case(
            "csv-not-numbers/eval-cls",
            "malformed CSV",
            _text("p.csv", "id,label,pred,p_a,p_b\n1,a,a,x,y\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-nan-probability/eval-cls",
            "malformed CSV",
            _text("p.csv", "id,label,pred,p_a,p_b\n1,a,a,nan,0.5\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-not-utf8/eval-cls",
            "malformed CSV",
            _text("p.csv", b"id,label,pred,p_a,p_b\n1,\xe9,a,0.9,0.1\n2,b,b,0.1,0.9\n"),
            "eval-cls",
        ),  # fmt: skip
        Case(
            "csv-ragged/eval-cls",
            "malformed CSV",
            _text("p.csv", "id,label,pred,p_a,p_b\n1,a,a,0.9\n2,b,b,0.1,0.9,7\n"),
            "eval-cls",
        ),  # fmt: skip
    ]
    # masks of the wrong size, damaged masks
    cases += [
        Case("mask-wrong-size/eval-seg", "mask of the wrong size", _masks((100, 100)), "eval-seg"),
        Case(
            "mask-truncated/eval-seg",
            "truncated",
            _masks(None, pred_bytes=b"\x89PNG\r\n\x1a\n\x00\x00"),
            "eval-seg",
        ),
        Case(
            "mask-random/eval-seg", "random bytes", _masks(None, pred_bytes=bytes(range(256)) * 4), "eval-seg"
        ),
        Case("mask-same/eval-seg", "real mask", _masks(None), "eval-seg", expect="accepted", check=_eval_ok),
    ]
    # GeoJSON through the library (no command reads GeoJSON)
    cases += [
        Case("geojson-garbage/api", "malformed GeoJSON", _text("a.geojson", "{not json"), "api-geojson"),
        Case(
            "geojson-not-features/api",
            "malformed GeoJSON",
            _text("a.geojson", '{"type": "Point"}'),
            "api-geojson",
        ),
        Case(
            "geojson-bad-geometry/api",
            "malformed GeoJSON",
            _text(
                "a.geojson",
                '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                '{"type": "Polygon", "coordinates": "x"}}]}',
            ),
            "api-geojson",
        ),  # fmt: skip
        Case(
            "geojson-not-utf8/api",
            "malformed GeoJSON",
            _text("a.geojson", b'{"type": "\xff"}'),
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


# ---------------------------------------------------------------- running and classifying
def run_inprocess(argv: list[str]) -> tuple[int | None, str, str]:
    """``eosin ARGV`` in this process: exit code (None when an exception escaped), stdout, stderr."""
    from eosin.cli._main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # noqa: BLE001 - an escaped exception is what the corpus counts
            import traceback

            err.write("Traceback (escaped main):\n" + "".join(traceback.format_exception(exc)))
            code = None
    return code, out.getvalue(), err.getvalue()


def run_capped(argv: list[str], *, memory: int = 2 * GB, seconds: int = 60) -> tuple[int | None, str, str]:
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    import eosin

    src = Path(eosin.__file__).resolve().parents[1]  # the eosin this process imported
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "eosin", *argv], capture_output=True, text=True, timeout=seconds,
            preexec_fn=cap, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, "", "HANG"
    return done.returncode, done.stdout, done.stderr


def _api_geojson(path: Path) -> tuple[int | None, str, str]:
    from eosin.errors import EosinError
    from eosin.io import read_geojson

    try:
        read_geojson(path)
    except EosinError as exc:
        return 1, "", f"error: {exc}\n"
    except Exception as exc:  # noqa: BLE001
        return None, "", f"Traceback: {type(exc).__name__}: {exc}\n"
    return 0, "", ""


def observe(case: Case, folder: Path) -> tuple[str, str]:
    """Run ``case`` with inputs and outputs under ``folder``; return (category, detail)."""
    path = case.build(folder)
    out = folder / "out"
    if case.command == "api-geojson":
        code, stdout, stderr = _api_geojson(path)
    elif case.capped:
        code, stdout, stderr = run_capped(argv_for(case.command, path, out))
    else:
        code, stdout, stderr = run_inprocess(argv_for(case.command, path, out))
    text = stdout + stderr
    if stderr == "HANG":
        return "hang", "no exit within 60 s"
    if "MemoryError" in text or code in (-9, 137) or "std::bad_alloc" in text:
        return "runaway memory", text[-300:]
    if code is None or "Traceback" in text:
        return "traceback", text[-600:]
    leftovers = _leftovers(out) if case.command not in ("info", "info-deep", "eval-cls", "eval-seg") else []
    if case.expect == "accepted":
        if code != 0:
            return "wrongly refused", text[-400:]
        return (
            ("accepted", "")
            if case.check is None or case.check(path, out, stdout)
            else ("silently wrong", stdout[-400:])
        )
    if code == 0:
        return "silently wrong", "exit 0 for an input that should be refused: " + text[-300:]
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    one_line = len(lines) == 1 and ("Fix:" in lines[0] or (code == 2 and lines[0].startswith("Error:")))
    if case.command in ("info", "info-deep"):  # the doctor's record, or a usage error
        ok = (("unreadable" in stdout or "corrupt-tiles" in stdout) and "Fix:" in stdout) or one_line
    else:
        ok = one_line
    if not ok:
        return "unclear error", text[-400:]
    if leftovers:
        return "partial output", ", ".join(leftovers[:5])
    return "refused", ""


def _leftovers(out: Path) -> list[str]:
    """What a refused input left that it should not have: temporary or staging files, a store without any group,
    files other than the diagnostic pictures. Complete store groups (the tissue masks of a slide without tissue,
    kept as a cached result) are not leftovers."""
    if not out.exists():
        return []
    found = []
    for p in out.rglob("*"):
        rel = str(p.relative_to(out))
        if (
            (".staging" in p.parts and p.is_file())
            or p.name.endswith((".tmp", ".partial"))
            or ".tmp" in p.name
        ):
            found.append(rel)
        elif p.name.endswith(".zarr") and p.is_dir():
            if {c.name for c in p.iterdir()} <= {"zarr.json"}:
                found.append(rel + " (empty store)")
        elif p.is_file() and ".zarr" not in rel and p.name not in ALLOWED_AFTER_REFUSAL:
            found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------- the table for docs/reliability.md
COLUMNS = ("inputs", "typed errors", "accepted right", "tracebacks", "hangs", "runaway memory", "silently wrong",
           "partial outputs", "unclear errors", "good inputs refused")  # fmt: skip
_CATEGORY_COLUMN = {
    "refused": "typed errors", "accepted": "accepted right", "traceback": "tracebacks", "hang": "hangs",
    "runaway memory": "runaway memory", "silently wrong": "silently wrong", "partial output": "partial outputs",
    "unclear error": "unclear errors", "wrongly refused": "good inputs refused",
}  # fmt: skip


def table(results: list[dict]) -> str:
    kinds = sorted({r["kind"] for r in results})
    rows = []
    for kind in [*kinds, "all"]:
        sub = [r for r in results if kind == "all" or r["kind"] == kind]
        counts = dict.fromkeys(COLUMNS, 0)
        counts["inputs"] = len(sub)
        for r in sub:
            counts[_CATEGORY_COLUMN[r["category"]]] += 1
        label = f"**{kind}**" if kind == "all" else kind
        rows.append(f"| {label} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    head = "| kind | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1)
    return head + "\n" + "\n".join(rows)


def write_docs(report: Path, doc: Path = ROOT / "docs" / "reliability.md") -> None:
    results = json.loads(report.read_text())
    text = doc.read_text()
    start, end = "<!-- corpus-table -->", "<!-- /corpus-table -->"
    body = table(results)
    bad = [r for r in results if r["category"] not in ("refused", "accepted")]
    if bad:
        body += "\n\nNot yet as they should be:\n\n" + "\n".join(
            f"- `{r['id']}`: {r['category']}" for r in bad
        )
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{body}\n{end}{after}")


if __name__ == "__main__":  # run everything (slow cases too) and rewrite the table
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "corpus.json"
        env = {**os.environ, "EOSIN_CORPUS_REPORT": str(report), "PYTHONPATH": str(ROOT / "src")}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_corpus.py")],
                       env=env, cwd=ROOT)  # fmt: skip
        write_docs(report)
        print(table(json.loads(report.read_text())))
