"""``eosin evaluate``: classification metrics with confidence intervals (and segmentation, when installed)."""

from __future__ import annotations

import json
import math

import click

from eosin.cli._lazy import LazyGroup

# subcommands defined in other modules, imported on first use: name -> ("module:attribute", short help)
_PLUGINS = {
    "segmentation": (
        "eosin.cli._evaluate_segmentation:segmentation",
        "Segmentation metrics of predicted masks.",
    ),
    "retrieval": ("eosin.cli._vl:retrieval", "Recall@K of a tile index: text-to-image and image-to-image."),
    "robustness": (
        "eosin.cli._evaluate_robustness:robustness",
        "A tile classifier under stain and scanner perturbations.",
    ),
}


@click.group(cls=LazyGroup, lazy=_PLUGINS)
def evaluate() -> None:
    """Evaluate predictions against the truth: metrics with bootstrap confidence intervals and reports."""


@evaluate.command()
@click.argument("predictions", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: metric -> {value, ci_low, ci_high}."
)
@click.option(
    "--level",
    type=click.Choice(["tile", "slide", "patient"]),
    default="tile",
    show_default=True,
    help="Evaluate rows as they are (tile), or aggregated per slide or per patient first.",
)
@click.option(
    "--by-column",
    default=None,
    help="Column to aggregate by at slide/patient level (default: 'slide' or 'patient'); at tile level, the "
    "patient column whose ids the bootstrap resamples (default: 'patient' if present).",
)
@click.option(
    "--rule",
    type=click.Choice(["mean", "majority"]),
    default="mean",
    show_default=True,
    help="Aggregation: mean probability (argmax) or majority vote of the row predictions.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Write report.md, report.html, metrics.json and PNG figures into this folder.",
)
@click.option(
    "--bootstrap",
    "n_bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap replicates for the confidence intervals (0: none).",
)
@click.option(
    "--ci",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence interval coverage.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
def classification(
    predictions: str,
    as_json: bool,
    level: str,
    by_column: str | None,
    rule: str,
    report_dir: str | None,
    n_bootstrap: int,
    ci: float,
    seed: int,
) -> int:
    """Classification metrics of PREDICTIONS.csv with bootstrap confidence intervals.

    PREDICTIONS.csv has columns id, label (truth), pred (predicted class), one p_<class> probability column per
    class, and optionally patient and slide. At tile level a patient column makes the bootstrap resample patients,
    since tiles of one patient are correlated. With two classes, the second p_ column is the positive class of
    roc_auc and pr_auc.
    """
    from eosin.evaluate import evaluate_predictions, read_predictions_csv, write_report

    table = read_predictions_csv(predictions)
    report = evaluate_predictions(
        table, level=level, by=by_column, rule=rule, n_bootstrap=n_bootstrap, ci=ci, seed=seed
    )
    if report_dir is not None:
        write_report(report, report_dir, title=f"Classification report ({level} level)", source=predictions)
    if as_json:
        click.echo(json.dumps(report.to_json(), allow_nan=False))
        return 0
    _print_table(report)
    if report_dir is not None:
        click.echo(f"report: {report_dir}/report.html")
    return 0


def _print_table(report) -> None:
    from eosin.evaluate import caveats, metrics_table

    def fmt(m) -> str:
        if math.isnan(m.value):
            return "n/a"
        if math.isnan(m.ci_low):
            return f"{m.value:.3f}"
        return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"

    groups = report.counts.get("n_groups")
    boot = f"{report.n_bootstrap} {report.bootstrap} bootstrap" + (
        f" over {groups} patients" if groups else ""
    )
    click.echo(f"level: {report.level}   n: {report.counts['n']}   {round(report.ci * 100)}% CI: {boot}")
    overall, per_class = metrics_table(report)
    for line in caveats(report):
        click.echo(line)
    width = max(len(r[0]) for r in overall)
    for name, _ in overall[1:]:
        click.echo(f"  {name:<{width}}  {fmt(report.metrics[name])}")
    click.echo("")
    widths = [max(len(r[i]) for r in per_class) for i in range(len(per_class[0]))]
    for row in per_class:
        click.echo(
            "  "
            + "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    click.echo("")
    click.echo("confusion matrix (rows: true, columns: predicted)")
    cw = max(max(len(c) for c in report.classes), len(str(report.confusion_matrix.max())))
    click.echo("  " + " " * cw + "  " + "  ".join(c.rjust(cw) for c in report.classes))
    for c, row in zip(report.classes, report.confusion_matrix, strict=True):
        click.echo("  " + c.ljust(cw) + "  " + "  ".join(str(int(v)).rjust(cw) for v in row))
