"""The bad-input corpus of issue 13: every kind of damaged or unusual input, built at test time from the real
sample files, each run through the commands that take it.

This module holds the :class:`Case` type, the commands (:func:`argv_for`) and the checks of accepted inputs;
``corpus_cases.CASES`` lists the cases (inputs built lazily, nothing binary is committed) and
``corpus_run.observe`` runs one and classifies what happened: ``refused`` (a typed one-line error with a fix), ``accepted`` (exit 0 and the right result), or a
defect: ``traceback``, ``hang``, ``runaway memory``, ``silently wrong`` (exit 0 where the input should have been
refused, or a wrong result), ``partial output`` (a refused input that left files behind).

Running and classifying: ``corpus_run.py``; ``python tests/corpus_run.py`` runs the whole corpus (slow cases
included) and rewrites the table in docs/reliability.md between its ``corpus-table`` markers.
"""

from __future__ import annotations

import json
import os
import shutil
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
        # two inputs of the same file name in different folders (the built path is their parent folder)
        "tile-twins": [
            "tile",
            str(path / "a" / "slide.svs"),
            str(path / "b" / "slide.svs"),
            "--mpp",
            "1",
            "--slide-mpp",
            "0.5",
            "--out",
            o,
            "-q",
            "--workers",
            "0",
        ],
        # outputs that cannot be written: a file where the output folder should be, a folder the system refuses
        "tile-out-under-file": [
            "tile",
            p,
            "--mpp",
            "1",
            "--out",
            str(out.parent / "afile" / "o"),
            "-q",
            "--workers",
            "0",
        ],
        "tile-out-sys": [
            "tile",
            p,
            "--mpp",
            "1",
            "--out",
            f"/sys/eosin-corpus-{os.getpid()}",
            "-q",
            "--workers",
            "0",
        ],
        "import-out-under-file": ["import", "features", p, "--store", str(out.parent / "afile" / "s.zarr")],
    }[command]


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


def _twins(d: Path) -> Path:
    """a/slide.svs (CMU-1-Small-Region) and b/slide.svs (the pyramidal TIFF under the same name)."""
    for sub, src in (("a", bf.SVS), ("b", bf.PYRAMID)):
        (d / "twins" / sub).mkdir(parents=True)
        shutil.copyfile(src, d / "twins" / sub / "slide.svs")
    return d / "twins"


def _twins_right(path: Path, out: Path, stdout: str) -> bool:
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    got = {Path(r["slide"]).parent.name: (r["store"], r["n_tiles"]) for r in records}
    want = {"a": _reference_tiles(bf.SVS), "b": _reference_tiles(bf.PYRAMID)}
    return set(got) == {"a", "b"} and got["a"][0] != got["b"][0] and all(got[k][1] == want[k] for k in want)


def _with_afile(src: Path):
    def build(d: Path) -> Path:
        (d / "afile").write_text("a file where an output folder should be")
        return bf.copy_as(src, d, src.name)

    return build


def _copy_svs(d: Path) -> Path:
    return bf.copy_as(bf.SVS, d, bf.SVS.name)


def _reference_tiles(original: Path) -> int:
    """n_tiles of the original slide (the same command, computed once per session)."""
    key = str(original)
    if key not in _REFERENCE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            from corpus_run import run_inprocess

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
