"""What the slide-processing commands share: input expansion, common options, running and reporting."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from eosin.errors import UsageError

__all__ = [
    "echo_json",
    "expand_inputs",
    "precision_option",
    "run_over_slides",
    "slide_executor",
    "slide_mpp_option",
    "slide_options",
]


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """:func:`eosin.run.find_slides`, with a note on stderr for the files skipped inside folders."""
    from eosin.run import find_slides

    return find_slides(paths, on_skipped=_note_skipped)


def _note_skipped(skipped: list[Path]) -> None:
    names = ", ".join(p.name for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
    click.echo(f"note: skipped {len(skipped)} file(s) that are not slides or images: {names}", err=True)


class _SlideMppParam(click.ParamType):
    """A positive number, or a CSV file of per-slide values (columns slide, mpp)."""

    name = "MPP|CSV"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            number = float(value)
        except ValueError:
            path = Path(value)
            if not path.is_file():
                self.fail(f"{value!r} is neither a number of microns per pixel nor a CSV file", param, ctx)
            return path
        if not number > 0 or number == float("inf"):
            self.fail(f"{value!r} is not a positive number of microns per pixel", param, ctx)
        return number


def slide_mpp_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--slide-mpp MPP|CSV`` and ``--force-slide-mpp``, folded into one ``slide_mpp`` argument.

    The command receives ``slide_mpp`` as None or a :class:`eosin.slide.SlideMpp`: a number applies only to slides
    that record no plausible mpp (to all with ``--force-slide-mpp``); a CSV (columns slide, mpp) gives each named
    slide its value.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, force_slide_mpp: bool = False, **kwargs: Any) -> Any:
        kwargs["slide_mpp"] = to_slide_mpp(kwargs.get("slide_mpp"), force=force_slide_mpp)
        return func(*args, **kwargs)

    wrapper = click.option(
        "--force-slide-mpp",
        is_flag=True,
        help="Apply a --slide-mpp number to every slide, also those that record a plausible mpp of their own.",
    )(wrapper)
    return click.option(
        "--slide-mpp",
        type=_SlideMppParam(),
        default=None,
        help="Level-0 microns per pixel for slides that record no plausible mpp (missing, or outside 0.05-20), "
        "or a CSV file with columns slide,mpp giving named slides their value.",
    )(wrapper)


def to_slide_mpp(value: float | Path | None, *, force: bool = False) -> Any:
    """The :class:`eosin.slide.SlideMpp` for a ``--slide-mpp`` value (None when not given)."""
    from eosin.slide import SlideMpp

    if value is None:
        if force:
            raise UsageError(
                "--force-slide-mpp needs --slide-mpp X.", fix="e.g. --slide-mpp 0.25 --force-slide-mpp"
            )
        return None
    if isinstance(value, Path):
        if force:
            raise UsageError(
                "--force-slide-mpp applies a single --slide-mpp value; a CSV already gives each named slide its value."
            )
        return SlideMpp.from_csv(value)
    return SlideMpp(default=float(value), force=force)


#: seconds one slide may take in a per-slide stage (tissue, tile, qc) before it is given up
DEFAULT_SLIDE_TIMEOUT = 1800.0


def slide_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every slide-processing command takes."""
    options = [
        slide_mpp_option,
        click.option(
            "--backend",
            default=None,
            help="Reader to use: openslide, tiffslide, dicom, image (default: automatic).",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            help="Slides processed in parallel (0: in this process; default: one per CPU, at most the number of slides).",
        ),
        click.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Run the slides on a Dask cluster: its scheduler address (tcp://host:8786), or 'local' for a "
            "local Dask cluster. Workers need eosin installed and the same paths. Default: a local process pool.",
        ),
        click.option(
            "--slide-timeout",
            type=click.FloatRange(min=0),
            default=DEFAULT_SLIDE_TIMEOUT,
            show_default=True,
            metavar="SECONDS",
            help="Time budget of one slide; a slide past it fails with a clear message and the others go on "
            "(0: no limit).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def precision_option(what: str) -> Callable[..., Any]:
    """``--precision auto|fp32|fp16|bf16`` of the PyTorch commands (``what``: what it sets, for the help)."""
    return click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
        default="auto",
        show_default=True,
        help=f"{what}. auto: the fastest of fp32 and this device's mixed precisions that agrees with fp32, "
        "measured once per machine and model (eosin info --system lists the decisions).",
    )


def echo_json(record: Any) -> None:
    click.echo(json.dumps(record, default=_jsonable))


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def slide_executor(scheduler: str | None) -> contextlib.AbstractContextManager[Any]:
    """None (map_slides then uses a local process pool), or a Dask client for ``--scheduler``."""
    from eosin.run import dask_executor

    return dask_executor(scheduler)


def run_over_slides(
    stage: Callable[..., dict[str, Any]],
    jobs: Sequence[Any],
    *,
    workers: int | None,
    quiet: bool,
    desc: str,
    scheduler: str | None = None,
    slide_timeout: float | None = None,
) -> int:
    """Run ``stage`` on every job; print one JSON line per success on stdout and one line per failure on stderr.

    Returns the exit code: 0 when every slide succeeded, 1 when some failed.
    """
    from eosin.run import map_slides

    n_workers = min(len(jobs), workers if workers is not None else _cpus()) if jobs else 0
    with slide_executor(scheduler) as executor:
        results = map_slides(
            stage,
            jobs,
            workers=max(n_workers, 1),
            progress=not quiet and len(jobs) > 1,
            desc=desc,
            executor=executor,
            timeout=slide_timeout,
        )
    failed = 0
    for result in results:
        if result.error is None:
            echo_json(result.value)
            _warn_corrupt(result.value)
        else:
            failed += 1
            click.echo(f"error: {_readable(result.error)}", err=True)
    if failed:
        click.echo(f"{failed} of {len(jobs)} slide(s) failed.", err=True)
    sys.stdout.flush()
    return 1 if failed else 0


def _readable(error: BaseException) -> BaseException:
    """Typed errors as they are; a bare ``OSError`` (writing outputs) as a sentence saying what to do."""
    from eosin.errors import EosinError, output_error

    if isinstance(error, OSError) and not isinstance(error, EosinError):
        return output_error(error)
    return error


def _warn_corrupt(record: Any) -> None:
    n = record.get("corrupt_tiles") if isinstance(record, dict) else None
    if n:
        click.echo(
            f"warning: {record.get('slide')}: {n} tile(s) of the grid cover damaged image data; they are flagged "
            "('corrupt' in the store's grid) and reading them fails. Fix: copy the slide again, or see "
            "'eosin info --deep'",
            err=True,
        )


def _cpus() -> int:
    from eosin.tiles import default_workers

    return default_workers()
