"""The cohort report of ``eosin run``: ``OUT/report.html`` with every slide's status, QC, predictions and pictures.

Static HTML with relative links to the pictures each stage drew; no script, no external dependency. Nothing in it
depends on timing, so an interrupted and resumed run writes the same page as an uninterrupted one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["write_run_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;font-size:13px}
th{background:#f2f2f2;text-align:left}.failed{background:#fde8e8}.pics{display:flex;flex-wrap:wrap;min-width:640px}.pics img{height:120px;margin:2px;border:1px solid #ddd}
.small{color:#666;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _img(out: Path, path: Path, title: str) -> str:
    if not path.is_file():
        return ""
    rel = quote(path.relative_to(out).as_posix())
    return f'<a href="{rel}"><img src="{rel}" title="{_e(title)}" alt="{_e(title)}" loading="lazy"></a>'


def write_run_report(out: Path, config: dict[str, Any], slides: Sequence[dict[str, Any]]) -> Path:
    """Write ``out/report.html`` for the per-slide records of a run (see :func:`eosin.pipeline.run`)."""
    from eosin.io import atomic_write_text

    out = Path(out)
    classes = next((s["tile_classes"] for s in slides if s.get("tile_classes")), [])
    slide_classes = next((s["slide_classes"] for s in slides if s.get("slide_classes")), [])
    head = ["slide", "status", "doctor", "tissue", "QC", "tiles"]
    head += [f"mean p({c})" for c in classes]
    head += ["slide prediction"] if slide_classes else []
    head += ["nuclei / objects"] if any("n_objects" in s for s in slides) else []
    head += ["pictures"]
    rows = []
    for s in slides:
        folder = out / s["name"]
        cells = [f"<b>{_e(s['name'])}</b><div class=small>{_e(Path(s['slide']).name)}</div>"]
        if s["status"] == "ok":
            cells.append("ok")
        else:
            cells.append(f"failed at {_e(s['failed_stage'])}<div class=small>{_e(s['error'])}</div>")
        problems = s.get("problems") or []
        cells.append(
            _e("; ".join(p.get("code", str(p)) if isinstance(p, dict) else str(p) for p in problems) or "-")
        )
        cells.append(_e(s.get("tissue_fraction")))
        qc = s.get("qc") or {}
        if qc:
            link = quote(f"qc/{s['name']}/overlay.png")
            cells.append(
                f"blurry {_e(qc.get('blur_fraction'))}, flagged {_e(qc.get('flagged_tile_fraction'))}"
                f' <a href="{link}">overlay</a>'
            )
        else:
            cells.append(_e(s.get("qc_error", "-")))
        cells.append(_e(s.get("n_tiles")))
        for k in range(len(classes)):
            mean = s.get("tile_mean")
            cells.append(_e(f"{mean[k]:.3f}") if mean else "")
        if slide_classes:
            pred = s.get("slide_pred")
            cells.append(_e(f"{pred} ({max(s['slide_proba']):.3f})") if pred else "")
        if "nuclei / objects" in head:
            cells.append(_e(s.get("n_objects")))
        pics = [_img(out, folder / "overlay.png", "tissue"), _img(out, folder / "tiles.png", "tiles")]
        pics += [_img(out, folder / f"heatmap_{c}.png", f"heatmap {c}") for c in s.get("heatmap_names", [])]
        pics += [_img(out, folder / "attention.png", "attention")]
        pics += [_img(out, folder / "segmentation" / "overlay.png", "segmentation")]
        cells.append(f"<div class=pics>{''.join(pics)}</div>")
        cls = "" if s["status"] == "ok" else ' class="failed"'
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    n_failed = sum(s["status"] != "ok" for s in slides)
    names = ("tile_predictions.csv", "slide_predictions.csv", "qc/index.html")
    links = [f'<a href="{name}">{name}</a>' for name in names if (out / name).exists()]
    links.append('<a href="run.json">run.json</a>')  # written right after this page
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>eosin run report</title>
<style>{_STYLE}</style></head><body>
<h1>eosin run</h1>
<p>{len(slides)} slide(s), {n_failed} failed. Outputs: {" · ".join(links)}</p>
<table><tr>{"".join(f"<th>{_e(h)}</th>" for h in head)}</tr>
{chr(10).join(rows)}
</table>
<h2>Configuration</h2><pre>{_e(_yaml(config))}</pre>
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
