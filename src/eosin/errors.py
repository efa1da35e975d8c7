"""Every error eosin raises on purpose, in one place.

Each error says what went wrong, with which file or value, and how to fix it. The CLI maps them to exit codes
(:attr:`EosinError.exit_code`) and prints the message without a traceback; library users catch the classes.

Hierarchy::

    EosinError
    ├── UsageError (exit 2)              bad arguments: wrong value, unknown name
    │   ├── UnknownNameError             unknown model/method/... name, with close matches
    │   └── ConfigError                  a run configuration (eosin run) with a bad key or value
    ├── SlideError                       a problem with one input file
    │   ├── SlideNotFoundError
    │   ├── UnsupportedFormatError       not a slide/image eosin can read
    │   ├── CorruptSlideError            a readable format, but damaged (truncated, bad bytes)
    │   ├── ResolutionError              mpp-based work on a slide whose mpp cannot be trusted
    │   │   ├── MissingResolutionError
    │   │   └── ImplausibleResolutionError
    │   ├── NoTissueError
    │   └── SlideTimeoutError            one slide's work took longer than its time budget (--slide-timeout)
    ├── InputTooLargeError               a file declaring more pixels or bytes than the configured limit (bombs)
    ├── OutputError                      an output that cannot be written (permissions, read-only, a file in the way)
    ├── StoreError                       a per-slide store that is missing, foreign or from a newer schema
    ├── DataError                        a labelled-data table or cohort with a bad row, file or column
    │   ├── GeoJSONError                 a GeoJSON file that is not valid (line and reason)
    │   └── PatientLeakError             one patient on both sides of a train/test split
    ├── NotFittedError                   a trainable object used before ``fit``
    └── WeightsUnavailableError          model weights that cannot be had offline
        └── WeightsMismatchError         a weights file that is not the expected one (checksum, parameter names)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "CorruptSlideError",
    "DataError",
    "EosinError",
    "GeoJSONError",
    "ImplausibleResolutionError",
    "InputTooLargeError",
    "MissingResolutionError",
    "NoTissueError",
    "NotFittedError",
    "OutputError",
    "PatientLeakError",
    "ResolutionError",
    "SlideError",
    "SlideNotFoundError",
    "SlideTimeoutError",
    "StoreError",
    "UnknownNameError",
    "UnsupportedFormatError",
    "UsageError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
]


class EosinError(Exception):
    """Base of every error eosin raises on purpose.

    Parameters
    ----------
    message
        What went wrong, in one sentence.
    path
        The file or folder concerned, if any; it is named first in the message.
    fix
        What the user can do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text

    def __reduce__(self):  # keep the keyword arguments across process boundaries (worker pools)
        return _rebuild, (type(self), self.message, self.path, self.fix, self.__dict__)


def _rebuild(cls, message, path, fix, state):
    err = cls.__new__(cls)
    Exception.__init__(err)
    err.__dict__.update(state)
    err.message, err.path, err.fix = message, path, fix
    err.args = (str(err),)
    return err


class UsageError(EosinError, ValueError):
    """An argument has a wrong value or type."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """A name (model, method, format...) that is not among the valid choices; suggests close matches."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], *, fix: str | None = None):
        self.kind, self.name = kind, name
        self.choices = sorted(choices)
        close = difflib.get_close_matches(name, self.choices, n=3, cutoff=0.5)
        message = f"unknown {kind} {name!r}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        shown = ", ".join(self.choices[:20]) + (", ..." if len(self.choices) > 20 else "")
        message += f" Valid choices: {shown}."
        super().__init__(message, fix=fix)

    __str__ = EosinError.__str__  # KeyError would otherwise quote the message


class ConfigError(UsageError):
    """A run configuration (``eosin run CONFIG.yaml``) with an unknown key or a bad value; names the key."""


class SlideError(EosinError):
    """A problem with one input slide or image."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The path does not exist."""

    __str__ = EosinError.__str__


class UnsupportedFormatError(SlideError):
    """The file is not in a format eosin can read."""


class CorruptSlideError(SlideError):
    """The file is in a known format but damaged (truncated, corrupted bytes, inconsistent structure)."""


class ResolutionError(SlideError):
    """Resolution (microns per pixel) is needed but the slide's own value cannot be trusted."""


class MissingResolutionError(ResolutionError):
    """The slide does not record its microns per pixel."""


class ImplausibleResolutionError(ResolutionError):
    """The slide records a microns-per-pixel value outside the range of real microscopes."""


class NoTissueError(SlideError):
    """Tissue detection found no tissue."""


class InputTooLargeError(EosinError):
    """A file declares a size (pixels, array bytes) above eosin's configured limit; refused before decoding.

    The message names the setting that raises the limit (``EOSIN_MAX_IMAGE_PIXELS``, ``EOSIN_MAX_ARRAY_BYTES``).
    """


class SlideTimeoutError(SlideError, TimeoutError):
    """One slide's work took longer than its time budget; the other slides go on."""

    __str__ = EosinError.__str__


class OutputError(EosinError, OSError):
    """An output file or folder cannot be written: no permission, a read-only disk, a file where a folder should
    be (or the reverse), a full disk. Built from the ``OSError`` by :func:`output_error`."""

    __str__ = EosinError.__str__


def output_error(exc: OSError) -> EosinError:
    """A one-line :class:`OutputError` saying what to do, for an ``OSError`` met while writing outputs."""
    import errno

    path = exc.filename if exc.filename is not None else None
    if path is not None and os.path.basename(os.fspath(path)).startswith("."):
        path = os.path.dirname(os.fspath(path)) or "."  # a temporary name of an atomic write: its folder
    reasons = {
        errno.EACCES: (
            "permission denied.",
            "choose an output folder you can write to, or fix the permissions of this file or folder",
        ),
        errno.EPERM: (
            "the system does not allow writing here.",
            "choose an output folder on a normal disk you own",
        ),
        errno.EROFS: ("the disk is read-only.", "choose an output folder on a writable disk"),
        errno.ENOTDIR: (
            "a file stands where a folder is needed on this path.",
            "choose another output folder, or move that file away",
        ),
        errno.EISDIR: ("a folder stands where a file is to be written.", "choose another output name"),
        errno.EEXIST: ("something is already there.", "choose another output name, or remove it"),
        errno.ENOSPC: (
            "the disk is full.",
            "free some space or write to another disk; finished outputs are kept",
        ),
        errno.EDQUOT: ("the disk quota is used up.", "free some space or write to another disk"),
        errno.ENAMETOOLONG: ("the name is too long for the file system.", "use a shorter output path"),
    }
    message, fix = reasons.get(exc.errno, (f"cannot write ({exc.strerror or exc}).", "check the output path"))
    return OutputError(message, path=path, fix=fix)


class StoreError(EosinError):
    """A per-slide store is missing, not an eosin store, or written by a newer schema."""


class DataError(EosinError):
    """A labelled-data table or cohort is wrong: a missing file, an unknown column, a bad row."""


class GeoJSONError(DataError):
    """A GeoJSON file (a QuPath export, an annotation) is malformed; the message gives the line and the reason."""


class PatientLeakError(DataError):
    """The same patient is on both sides of a split (train and validation/test)."""


class NotFittedError(EosinError, AttributeError):
    """A trainable object was used before ``fit`` was called."""


class WeightsUnavailableError(EosinError):
    """Model weights are not available offline and cannot be downloaded."""


class WeightsMismatchError(WeightsUnavailableError):
    """A weights file was found but is not the expected one: wrong checksum, or parameters that do not fit."""
