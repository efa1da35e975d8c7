from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, expand_inputs


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", default="macenko", show_default=True, help="reinhard, macenko or vahadane.")
@click.option(
    "--target",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="Image whose staining to match (repeat to pool several target images).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
def stain(images, method, target, out):
    """Normalize the stain of IMAGE... (files or folders of PNG/JPEG/TIFF) to the target's.

    Writes OUT/<stem>.png for each image (atomically) and prints one JSON line per image. Glass is left as it is.
    Exit code 1 when some images could not be read or written (the others are still written).
    """
    from eosin.errors import EosinError, UsageError, output_error
    from eosin.stain import get_normalizer

    normalizer = get_normalizer(method)
    try:
        targets = [_read(p) for p in target]
    except EosinError as exc:
        raise UsageError(
            f"cannot read the stain target: {exc}", fix="pass a readable RGB image to --target"
        ) from exc
    normalizer.fit(targets)
    paths = expand_inputs(images)
    stems = [p.stem for p in paths]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise UsageError(
            f"several inputs would write the same output name: {', '.join(twins)}.", fix="run them separately"
        )
    failed = 0
    for path in paths:
        try:
            dest = out / f"{path.stem}.png"
            normalized = normalizer.transform(_read(path))
            out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
            _write_png(dest, normalized)
        except (EosinError, OSError) as exc:
            failed += 1
            click.echo(f"error: {exc if isinstance(exc, EosinError) else output_error(exc)}", err=True)
            continue
        echo_json({"image": str(path), "method": normalizer.name, "out": str(dest)})
    if failed:
        click.echo(f"{failed} of {len(paths)} image(s) failed.", err=True)
    return 1 if failed else 0


def _read(path: Path):
    """The image as RGB uint8: its declared size checked first, a truncated or damaged file refused (never
    filled with grey)."""
    from eosin._limits import decode_image
    from eosin.errors import SlideNotFoundError, UnsupportedFormatError
    from eosin.slide import special_file

    if not path.exists():
        raise SlideNotFoundError("no such file.", path=path, fix="check the path")
    if path.is_dir() or special_file(path):
        raise UnsupportedFormatError(
            f"this is {special_file(path) or 'a folder'}, not an image file.",
            path=path,
            fix="give the image file itself",
        )
    return decode_image(path)


def _write_png(dest: Path, rgb) -> None:
    import cv2

    from eosin.io import atomic_path

    with atomic_path(dest, suffix=".png") as tmp:  # honours the umask
        if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
            raise OSError(f"{dest}: could not write the PNG")
