"""``eosin train mil``: a slide-level aggregator trained on a cohort's stored feature bags."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from eosin.cli._common import echo_json

_MODELS = ["abmil", "clam-sb", "clam-mb", "transmil", "summary", "mean", "vote", "thresholds"]


@click.command()
@click.argument("cohort", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--features",
    "source",
    required=True,
    help="Encoder whose stored features form the bags (eosin embed --encoder); for mean, vote and thresholds "
    "the key of stored tile predictions (eosin predict).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--stores",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of <slide stem>/store.zarr (the --out of eosin tile/embed); default: beside each slide.",
)
@click.option(
    "--model",
    type=click.Choice(_MODELS, case_sensitive=False),
    default="abmil",
    show_default=True,
    help="Aggregator (docs/aggregate.md).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="MIL training epochs."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    help="Patient-level k-fold cross-validation (every slide predicted by a model that did not see its patient).",
)
@click.option(
    "--test-size",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="Share of patients held out when the cohort has no split column.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option(
    "--hidden", type=click.IntRange(min=1), default=None, help="MIL embedding width (default: the model's)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def mil(cohort, source, out, stores, model, epochs, lr, folds, test_size, seed, device, hidden, quiet) -> int:
    """Train a slide classifier on COHORT.csv (path, slide_id, patient_id, label[, split]) and evaluate it.

    Each slide's bag is the features group of --features in its store. Patients are split (the split column,
    else a stratified patient-level split, or --folds); the model is trained on the training patients and scored on
    the held-out ones. OUT gets predictions.csv (for eosin evaluate classification), metrics.json (bootstrap 95%
    CIs), model/ (every aggregator, rules included: config.json, plus weights.safetensors or estimator.skops;
    eosin.aggregate.load_aggregator reads it), run.json (the values used, resolved device, versions, input
    hashes) and, for attention models, <slide_id>/attention.png; every store gets attention/<key>. One JSON
    summary on stdout; exit 1 when some slides had no bag.
    """
    from eosin.aggregate import train_cohort

    params = {"hidden": hidden} if hidden is not None and model.lower() in _MODELS[:4] else {}
    summary = train_cohort(
        cohort,
        source,
        out,
        stores=stores,
        model=model,
        params=params,
        epochs=epochs,
        lr=lr,
        folds=folds,
        test_size=test_size,
        seed=seed,
        device=device,
        progress=not quiet,
        log=lambda line: click.echo(line, err=True),
    )
    echo_json(summary)
    if summary["left_out"]:
        click.echo(f"{len(summary['left_out'])} slide(s) had no bag and were left out.", err=True)
    sys.stdout.flush()
    return 1 if summary["left_out"] else 0
