"""``eosin info``: the slide doctor on the command line."""

from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, expand_inputs, slide_mpp_option


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--system",
    is_flag=True,
    help="Describe this machine instead: CPU, cores, GPU, library versions, and the precision/runtime "
    "decisions measured here (cached in $EOSIN_HOME/calibration).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of records on stdout.")
@slide_mpp_option
@click.option(
    "--backend", default=None, help="Reader to use: openslide, tiffslide, dicom, image (default: automatic)."
)
@click.option(
    "--deep",
    is_flag=True,
    help="Decode every tile of every level and report damaged ones (corrupt-tiles); slower.",
)
def info(paths, system, as_json, slide_mpp, backend, deep):
    """Describe slides and list their problems (the slide doctor).

    PATHS are slide files or folders (the slides inside); --system describes this machine instead. Each slide is opened and part of its pixels decoded;
    a file that cannot be read gets an 'unreadable' problem and the exit code is 1 (the others are still shown).
    """
    from eosin.errors import EosinError, UsageError

    if system:
        from eosin.cli._system import describe_system

        describe_system(as_json)
        return 0
    if not paths:
        raise UsageError("eosin info needs slide paths (or --system).", fix="e.g. eosin info slide.svs")
    from eosin.slide import diagnose_path, list_backends, unreadable_record

    if backend is not None and backend not in list_backends():
        from eosin.errors import UnknownNameError

        raise UnknownNameError("backend", backend, list_backends())
    records = []
    for path in _inputs(paths):
        try:
            records.append(diagnose_path(path, backend=backend, slide_mpp=slide_mpp, deep=deep))
        except EosinError as exc:  # e.g. a path that vanished
            records.append(unreadable_record(path, exc))
    if as_json:
        echo_json(records)
    else:
        for i, record in enumerate(records):
            if i:
                click.echo()
            click.echo(_describe(record))
    bad = sum(any(p["code"] in ("unreadable", "corrupt-tiles") for p in r["problems"]) for r in records)
    if bad:
        click.echo(f"{bad} of {len(records)} file(s) could not be read.", err=True)
    return 1 if bad else 0


def _inputs(paths) -> list[Path]:
    """Every input, a missing one kept (it becomes an unreadable record instead of stopping the others)."""
    out: list[Path] = []
    for path in paths:
        out.extend(expand_inputs([path]) if Path(path).exists() else [Path(path)])
    return out


def _describe(record: dict) -> str:
    lines = [click.style(record["path"], bold=True)]
    if record["width"] is not None:
        levels = record["levels"]
        pyramid = ", ".join(f"{lv['width']}x{lv['height']} (/{lv['downsample']:.4g})" for lv in levels)
        if record["mpp_x"] is None:
            mpp = "unknown"
        else:
            mpp = f"{record['mpp_x']:.4g} x {record['mpp_y']:.4g} µm/px ({record['mpp_source']})"
        rows = [
            ("format", f"{record['format']} (read by {record['backend']})"),
            ("size", f"{record['width']} x {record['height']} px"),
            (f"levels ({len(levels)})", pyramid),
            ("mpp", mpp),
            (
                "objective",
                "unknown" if record["objective_power"] is None else f"{record['objective_power']:g}x",
            ),
            ("channels", ", ".join(record["channel_names"])),
            ("associated", ", ".join(record["associated_images"]) or "none"),
        ]
        if record["bounds"] and list(record["bounds"][2:]) != [record["width"], record["height"]]:
            rows.append(("bounds", "x={} y={} {}x{}".format(*record["bounds"])))
        lines += [f"  {name:<12} {value}" for name, value in rows]
    if record["problems"]:
        lines.append("  problems:")
        lines += [f"    - {p['code']}: {p['message']}" for p in record["problems"]]
    else:
        lines.append("  problems:    none")
    return "\n".join(lines)
