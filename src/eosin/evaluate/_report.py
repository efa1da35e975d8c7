"""Classification report files: report.md, report.html, metrics.json and the figures they show."""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path

from eosin.errors import UsageError
from eosin.evaluate._classification import ClassificationReport

__all__ = ["write_report", "metrics_table", "caveats"]

_OVERALL = ("accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1", "roc_auc", "pr_auc")
_PER_CLASS = ("recall", "specificity", "ppv", "npv", "f1", "roc_auc", "pr_auc")
_HEADINGS = {
    "recall": "TPR (recall)",
    "specificity": "TNR (specificity)",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC (AP)",
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(m) -> str:
    if m is None or math.isnan(m.value):
        return "n/a"
    if math.isnan(m.ci_low):
        return f"{m.value:.3f}"
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"


def metrics_table(report: ClassificationReport) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the overall table (metric, value [CI]) and of the per-class table (class, one column per metric).

    The first row of each is its header.
    """
    pct = f"{round(report.ci * 100)}% CI"
    overall = [["metric", f"value [{pct}]"]]
    for name in _OVERALL:
        if name in report.metrics:
            overall.append([name, _cell(report.metrics[name])])
    cols = [m for m in _PER_CLASS if f"{m}[{report.classes[0]}]" in report.metrics]
    per_class = [["class", "support", *[_HEADINGS[m] for m in cols]]]
    for c in report.classes:
        per_class.append(
            [c, str(report.counts["support"][c]), *[_cell(report.metrics[f"{m}[{c}]"]) for m in cols]]
        )
    return overall, per_class


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _confusion_rows(report: ClassificationReport) -> list[list[str]]:
    rows = [["true \\ predicted", *report.classes]]
    for c, row in zip(report.classes, report.confusion_matrix):
        rows.append([c, *[str(int(v)) for v in row]])
    return rows


def caveats(report: ClassificationReport) -> list[str]:
    """Plain warnings about how far the intervals can be trusted on these data."""
    out = []
    n_groups = report.counts.get("n_groups")
    if report.n_bootstrap and n_groups is not None and n_groups < 20:
        out.append(
            f"Caution: only {n_groups} patients (clusters); bootstrap intervals from so few are unreliable."
        )
    support = [v for v in report.counts["support"].values() if v > 0]
    if report.n_bootstrap and support and min(support) < 10:
        out.append(
            f"Caution: the smallest class has {min(support)} samples; its per-class intervals are unreliable, and a "
            "value of exactly 0 or 1 gets a zero-width interval that does not mean certainty."
        )
    return out


def write_report(
    report: ClassificationReport,
    out_dir: str | os.PathLike[str],
    *,
    title: str = "Classification report",
    source: str | None = None,
) -> dict[str, Path]:
    """Write a Markdown and an HTML report with figures into ``out_dir`` (created if needed).

    Files: ``report.md``, ``report.html`` (self-contained apart from the PNGs beside it, referenced relatively),
    ``metrics.json`` (:meth:`ClassificationReport.summary`), ``confusion.png`` (counts and row-normalised) and,
    when the report has probabilities, ``roc.png``, ``pr.png`` and ``calibration.png``. Every file is written
    atomically.

    Parameters
    ----------
    report
        From :func:`classification_metrics`.
    out_dir
        Output folder.
    title
        Report heading.
    source
        What was evaluated (e.g. the CSV path), shown under the heading.

    Returns
    -------
    dict
        File role (``"markdown"``, ``"html"``, ``"json"``, ``"confusion"``, ``"roc"``, ...) → path.
    """
    from eosin.evaluate import _plots

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError("the report folder is a file.", path=out, fix="choose a folder path")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"confusion": _plots.plot_confusion(report, out / "confusion.png")}
    if report.proba is not None:
        files["roc"] = _plots.plot_roc(report, out / "roc.png")
        files["pr"] = _plots.plot_pr(report, out / "pr.png")
        files["calibration"] = _plots.plot_calibration(report, out / "calibration.png")
    overall, per_class = metrics_table(report)
    confusion = _confusion_rows(report)
    pct = round(report.ci * 100)
    n_groups = report.counts.get("n_groups")
    if not report.n_bootstrap:
        method = "no bootstrap (intervals not computed)"
    else:
        resampled = (
            f"whole patients ({n_groups} clusters; cluster bootstrap)"
            if report.bootstrap == "cluster"
            else "samples within each true class (stratified bootstrap)"
        )
        method = (
            f"{report.n_bootstrap} bootstrap replicates resampling {resampled}, seed {report.seed}; "
            f"{pct}% percentile intervals over the replicates where a metric is defined"
        )
    facts = [
        f"Level: **{report.level}**, n = {report.counts['n']}, classes: {', '.join(report.classes)}.",
        f"Intervals: {method}.",
        "n/a: undefined on these data (e.g. a class never predicted has no PPV).",
    ]
    facts += caveats(report)
    figures = [(k, f.name) for k, f in files.items()]

    md = [f"# {title}", ""]
    if source:
        md += [f"Source: `{source}`", ""]
    md += [
        *[f"- {f}" for f in facts],
        "",
        "## Overall",
        "",
        _md_table(overall),
        "",
        "## Per class",
        "",
        _md_table(per_class),
        "",
        "## Confusion matrix (rows: true, columns: predicted)",
        "",
        _md_table(confusion),
        "",
    ]
    md += ["## Figures", ""] + [f"![{k}]({name})" for k, name in figures] + [""]
    files["markdown"] = out / "report.md"
    _write_text(files["markdown"], "\n".join(md))

    def md_inline(text: str) -> str:
        parts = html.escape(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f3f7}td:first-child{text-align:left}"
        "img{max-width:100%;margin:0.5em 0;border:1px solid #eee}.figs{display:flex;flex-wrap:wrap;gap:1em}"
    )
    doc = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if source:
        doc.append(f"<p>Source: <code>{html.escape(source)}</code></p>")
    doc.append("<ul>" + "".join(f"<li>{md_inline(f)}</li>" for f in facts) + "</ul>")
    doc += [
        "<h2>Overall</h2>",
        _html_table(overall),
        "<h2>Per class</h2>",
        _html_table(per_class),
        "<h2>Confusion matrix (rows: true, columns: predicted)</h2>",
        _html_table(confusion),
        "<h2>Figures</h2>",
        '<div class="figs">',
    ]
    doc += [
        f'<figure><img src="{html.escape(name)}" alt="{k}"><figcaption>{k}</figcaption></figure>'
        for k, name in figures
    ]
    doc += ["</div>", "</body></html>", ""]
    files["html"] = out / "report.html"
    _write_text(files["html"], "\n".join(doc))
    files["json"] = out / "metrics.json"
    _write_text(files["json"], json.dumps(report.summary(), indent=2) + "\n")
    return files
