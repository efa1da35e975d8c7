"""The DICOM backend: wsidicom for DICOM whole-slide series, pydicom for single tiled instances it refuses.

wsidicom needs a standard-conformant series. Some real files are not: the shared ``prostate-he-dicom-sm.dcm`` is a
single instance of 42 JPEG frames (500x500) with neither per-frame positions nor a Dimension Organization Type,
and its frames are stored **column by column**. For such an instance the frame order is decided from the pixels:
the frames are placed row-major and column-major, and the layout whose seams between neighbouring frames differ
least is used (``properties["eosin.frame-order"]`` records the outcome). A ``TILED_FULL`` instance is row-major by
the standard; explicit per-frame positions are used when present.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from eosin.errors import UnsupportedFormatError
from eosin.slide._base import PLAUSIBLE_MPP, Level, Slide, _LazyImages
from eosin.slide._pixels import as_rgb, read_error

__all__ = ["DicomSlide"]

#: decoded frames kept per slide
_CACHE_FRAMES = 256
#: decide the frame order from pixels only for instances this small (larger ones follow the standard: row-major)
_MAX_FRAMES_TO_INSPECT = 1024
_WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


class DicomSlide(Slide):
    """A DICOM whole-slide image. Build with :meth:`open`."""

    _wsi = None
    _instance = None

    @classmethod
    def open(cls, path: Path) -> DicomSlide:
        import warnings

        try:
            with warnings.catch_warnings():  # over-long UIDs and names are common and harmless
                warnings.simplefilter("ignore")
                return cls._open_wsidicom(path)
        except Exception as wsidicom_error:  # not a conformant series: read the single instance with pydicom
            if path.is_dir():
                raise
            try:
                return cls._open_pydicom(path)
            except UnsupportedFormatError:
                raise
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
                raise RuntimeError(f"wsidicom: {wsidicom_error}; pydicom: {exc}") from None

    # ------------------------------------------------------------ wsidicom
    @classmethod
    def _open_wsidicom(cls, path: Path) -> DicomSlide:
        import wsidicom

        wsi = wsidicom.WsiDicom.open(path)
        base = wsi.levels.base_level
        levels = [
            Level(
                lv.size.width,
                lv.size.height,
                (base.size.width / lv.size.width + base.size.height / lv.size.height) / 2,
            )
            for lv in wsi.levels
        ]
        loaders = {}
        for i, _ in enumerate(wsi.labels or []):
            loaders["label" if i == 0 else f"label{i}"] = lambda i=i: np.asarray(
                wsi.read_label(i).convert("RGB")
            )
        for i, _ in enumerate(wsi.overviews or []):
            loaders["macro" if i == 0 else f"macro{i}"] = lambda i=i: np.asarray(
                wsi.read_overview(i).convert("RGB")
            )
        mpp = base.mpp
        slide = cls(
            path=path,
            format="dicom",
            backend="dicom",
            levels=levels,
            mpp_x=float(mpp.width) if mpp else None,
            mpp_y=float(mpp.height) if mpp else None,
            mpp_source="slide" if mpp else None,
            associated_images=_LazyImages(loaders),
            properties={"eosin.reader": "wsidicom"},
        )
        slide._wsi, slide._wsi_levels = wsi, [lv.level for lv in wsi.levels]
        return slide

    # ------------------------------------------------------------ pydicom
    @classmethod
    def _open_pydicom(cls, path: Path) -> DicomSlide:
        instance = _TiledInstance(path)
        mpp, mpp_source = instance.mpp()
        props = dict(instance.properties)
        if mpp is None and "eosin.ignored-mpp" in props:
            mpp_source = "ignored"
        slide = cls(
            path=path,
            format="dicom",
            backend="dicom",
            levels=[Level(instance.width, instance.height, 1.0)],
            mpp_x=mpp[0] if mpp else None,
            mpp_y=mpp[1] if mpp else None,
            mpp_source=mpp_source,
            objective_power=instance.objective_power,
            properties=props,
        )
        slide._instance = instance
        return slide

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        try:
            if self._wsi is not None:
                ds = self.levels[level].downsample
                loc = (round(x / ds), round(y / ds))
                region = self._wsi.read_region(loc, self._wsi_levels[level], (width, height))
                return np.asarray(region.convert("RGB"))
            return self._instance.read(x, y, width, height)
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a damaged file
            raise read_error(self.path, exc, level, x, y, width, height) from None

    def close(self) -> None:
        if self._wsi is not None:
            self._wsi.close()
            self._wsi = None


class _TiledInstance:
    """One single-resolution tiled DICOM instance read frame by frame with pydicom."""

    def __init__(self, path: Path):
        import warnings

        import pydicom

        with (
            warnings.catch_warnings()
        ):  # over-long UIDs and names are common and harmless; damage raises below
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), defer_size="1 KB")
        if "TotalPixelMatrixColumns" not in ds or "NumberOfFrames" not in ds:
            raise UnsupportedFormatError(
                "this DICOM file is not a tiled whole-slide image (no total pixel matrix or frames).",
                path=path,
                fix="give a VL Whole Slide Microscopy Image instance or series",
            )
        self.path, self._ds = path, ds
        self.width, self.height = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
        self.tile_w, self.tile_h = int(ds.Columns), int(ds.Rows)
        self.n_frames = int(ds.NumberOfFrames)
        self.cols, self.rows = math.ceil(self.width / self.tile_w), math.ceil(self.height / self.tile_h)
        self.properties = {
            "dicom.SOPClassUID": str(ds.get("SOPClassUID", "")),
            "dicom.TransferSyntaxUID": str(ds.file_meta.get("TransferSyntaxUID", "")),
            "dicom.DimensionOrganizationType": str(ds.get("DimensionOrganizationType", "")),
            "dicom.NumberOfFrames": str(self.n_frames),
            "eosin.reader": "pydicom",
        }
        power = ds.get("ObjectiveLensPower")
        self.objective_power = float(power) if power not in (None, "") else None
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._encapsulated = ds.file_meta.TransferSyntaxUID.is_encapsulated
        self._frames_bytes = None
        self.positions = self._frame_positions()

    # -------------------------------------------------------- metadata
    def mpp(self) -> tuple[tuple[float, float] | None, str | None]:
        ds = self._ds
        try:
            spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
            return (float(spacing[1]) * 1000.0, float(spacing[0]) * 1000.0), "slide"
        except (AttributeError, IndexError, KeyError):
            pass
        vol_w, vol_h = ds.get("ImagedVolumeWidth"), ds.get("ImagedVolumeHeight")
        if (
            vol_w and vol_h
        ):  # mm covered by the pixel matrix: trusted only when it gives square, plausible pixels
            mx, my = float(vol_w) * 1000.0 / self.width, float(vol_h) * 1000.0 / self.height
            lo, hi = PLAUSIBLE_MPP
            if abs(mx - my) <= 0.01 * max(mx, my) and lo <= mx <= hi:
                return (mx, my), "slide"
            self.properties["eosin.ignored-mpp"] = (
                f"{mx:.6g} x {my:.6g} µm/px (from Imaged Volume {float(vol_w):g} x {float(vol_h):g} mm: non-square pixels)"
            )
        return None, None

    def _frame_positions(self) -> list[tuple[int, int]]:
        """Top-left level-0 ``(x, y)`` of every frame."""
        ds = self._ds
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and "PlanePositionSlideSequence" in per_frame[0]:
            self.properties["eosin.frame-order"] = "per-frame positions"
            out = []
            for item in per_frame:
                pos = item.PlanePositionSlideSequence[0]
                out.append(
                    (
                        int(pos.ColumnPositionInTotalImagePixelMatrix) - 1,
                        int(pos.RowPositionInTotalImagePixelMatrix) - 1,
                    )
                )
            return out
        if self.n_frames != self.cols * self.rows:
            raise UnsupportedFormatError(
                f"the DICOM instance has {self.n_frames} frames but its {self.width}x{self.height} pixel matrix "
                f"needs {self.cols * self.rows} tiles of {self.tile_w}x{self.tile_h}, and it records no frame positions.",
                path=self.path,
                fix="export the slide again with per-frame positions (TILED_SPARSE) or as TILED_FULL",
            )
        row_major = [
            ((i % self.cols) * self.tile_w, (i // self.cols) * self.tile_h) for i in range(self.n_frames)
        ]
        col_major = [
            ((i // self.rows) * self.tile_w, (i % self.rows) * self.tile_h) for i in range(self.n_frames)
        ]
        organization = str(ds.get("DimensionOrganizationType", "")).upper()
        if organization == "TILED_FULL" or self.rows == 1 or self.cols == 1:
            self.properties["eosin.frame-order"] = "row-major"
            return row_major
        if self.n_frames > _MAX_FRAMES_TO_INSPECT:
            self.properties["eosin.frame-order"] = "row-major (assumed: no organization type)"
            return row_major
        frames = [self.frame(i) for i in range(self.n_frames)]
        seam_row = _seam_difference(frames, row_major, self.tile_w, self.tile_h)
        seam_col = _seam_difference(frames, col_major, self.tile_w, self.tile_h)
        chosen = "column-major" if seam_col < seam_row else "row-major"
        self.properties["eosin.frame-order"] = (
            f"{chosen} (detected from seams: mean edge difference {min(seam_row, seam_col):.1f} "
            f"vs {max(seam_row, seam_col):.1f} for the other order)"
        )
        return col_major if chosen == "column-major" else row_major

    # -------------------------------------------------------- pixels
    def frame(self, index: int) -> np.ndarray:
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        arr = self._decode(index)
        with self._lock:
            self._cache[index] = arr
            if len(self._cache) > _CACHE_FRAMES:
                self._cache.popitem(last=False)
        return arr

    def _decode(self, index: int) -> np.ndarray:
        if not self._encapsulated:
            return as_rgb(self._ds.pixel_array[index] if self.n_frames > 1 else self._ds.pixel_array)
        if self._frames_bytes is None:
            from pydicom.encaps import generate_frames

            with self._lock:
                if self._frames_bytes is None:
                    self._frames_bytes = list(
                        generate_frames(self._ds.PixelData, number_of_frames=self.n_frames)
                    )
        from PIL import Image

        with Image.open(io.BytesIO(self._frames_bytes[index])) as im:
            return as_rgb(np.asarray(im.convert("RGB")))

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), 255, np.uint8)
        for i, (fx, fy) in enumerate(self.positions):
            ox0, oy0 = max(x, fx), max(y, fy)
            ox1, oy1 = min(x + width, fx + self.tile_w), min(y + height, fy + self.tile_h)
            if ox1 <= ox0 or oy1 <= oy0:
                continue
            tile = self.frame(i)
            out[oy0 - y : oy1 - y, ox0 - x : ox1 - x] = tile[oy0 - fy : oy1 - fy, ox0 - fx : ox1 - fx]
        return out


def _seam_difference(frames: list[np.ndarray], positions: list[tuple[int, int]], tw: int, th: int) -> float:
    """Mean absolute difference across the borders of horizontally and vertically adjacent frames."""
    where = {pos: i for i, pos in enumerate(positions)}
    diffs = []
    for (x, y), i in where.items():
        right, below = where.get((x + tw, y)), where.get((x, y + th))
        if right is not None:
            diffs.append(np.abs(frames[i][:, -1].astype(np.int16) - frames[right][:, 0]).mean())
        if below is not None:
            diffs.append(np.abs(frames[i][-1].astype(np.int16) - frames[below][0]).mean())
    return float(np.mean(diffs)) if diffs else 0.0
