"""The one training loop of eosin: tile classifiers, U-Nets, attention-MIL aggregators and two-tower models.

Each trainer supplies only what is its own (how a batch becomes a loss, its data, how it validates and what an
epoch's record says); the loop owns the rest: epochs and an optional step budget, the forward pass under autocast
(:func:`eosin._device.autocast`) with a gradient scaler for fp16 (bf16 and fp32 need none), the optimizer and an
optional learning-rate schedule, validation after each epoch with a monitored value and patience-based early
stopping, the best weights, the history of per-epoch records and progress.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eosin.errors import UsageError

__all__ = ["EpochStats", "LoopResult", "fit_loop"]


@dataclass
class EpochStats:
    """What the loop measured in one epoch's training phase (validation not included)."""

    epoch: int  #: 1-based
    losses: list[float] = field(default_factory=list)  #: each step's loss
    seen: int = 0  #: examples trained on (the sum of ``size(batch)``)
    loss_sum: float = 0.0  #: sum of loss * size over the steps, in step order
    seconds: float = 0.0  #: of the training phase
    steps: int = 0  #: optimizer steps since the start of the loop

    @property
    def train_loss(self) -> float:
        """Mean loss per example."""
        return self.loss_sum / max(self.seen, 1)


@dataclass
class LoopResult:
    """``history`` (one record per epoch), the best epoch (1-based; 0: none) and its score, the steps taken and
    whether early stopping ended the loop."""

    history: list[dict[str, Any]]
    best_epoch: int = 0
    best_score: float | None = None
    steps: int = 0
    stopped_early: bool = False


def _default_record(stats: EpochStats, val: dict[str, Any] | None) -> dict[str, Any]:
    return {"epoch": stats.epoch, "train_loss": stats.train_loss, **(val or {})}


def fit_loop(
    forward: Callable[[Any], Any],
    data: Iterable[Any] | Callable[[int], Iterable[Any]],
    *,
    optimizer: Any,
    epochs: int,
    device: Any,
    precision: str = "fp32",
    model: Any = None,
    loss: Callable[[Any, Any], Any] | None = None,
    size: Callable[[Any], int] | None = None,
    scheduler: Any = None,
    scheduler_interval: str = "step",
    max_steps: int | None = None,
    after_step: Callable[[], None] | None = None,
    validate: Callable[[], dict[str, Any]] | None = None,
    monitor: str | Callable[[dict[str, Any]], float] = "val_loss",
    mode: str = "min",
    baseline: float | None = None,
    patience: int | None = None,
    keep_best: bool = True,
    mark_best: bool = False,
    record: Callable[[EpochStats, dict[str, Any] | None], dict[str, Any]] | None = None,
    history: list[dict[str, Any]] | None = None,
    on_best: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: str | None = None,
) -> LoopResult:
    """Train for ``epochs`` passes over ``data``; returns the history and the best epoch.

    One step: ``out = forward(batch)`` under autocast at ``precision``, then ``loss(out, batch)`` in float32
    outside it (without ``loss``, ``out`` is the loss), ``optimizer.zero_grad``, backward through a
    :class:`torch.amp.GradScaler` (enabled for ``fp16`` only), the optimizer step, ``scheduler.step()`` (per step
    or per epoch) and ``after_step()``. After each epoch: ``validate()`` (when given), the epoch's record
    (``record(stats, val)``, default ``epoch``, ``train_loss`` and the validation values), which is appended to the
    history, then the monitored score, ``on_best`` and ``on_epoch``.

    Parameters
    ----------
    forward
        A batch to the network's output, or straight to the loss.
    data
        The batches of an epoch: an iterable (iterated once per epoch, like a DataLoader) or ``data(epoch)``
        (0-based) giving one.
    optimizer, scheduler, scheduler_interval
        The optimizer; an optional learning-rate scheduler stepped every ``"step"`` or every ``"epoch"``.
    device, precision
        Where the model runs and its resolved autocast precision (``fp32``, ``bf16``, ``fp16``;
        :func:`eosin._device.resolve_precision`).
    model
        The module trained: put in train mode at the start of each epoch, and its best weights kept (``keep_best``)
        and restored at the end. ``None``: modes are the caller's, nothing is kept.
    size
        Examples in a batch (weights ``train_loss``, counts ``seen``); default 1 per batch.
    max_steps
        Stop after this many optimizer steps in all.
    validate
        Validation values of the model as it is after an epoch (a dict merged into the record).
    monitor, mode, baseline
        The record's key (or a function of the record) that says which epoch is best, ``"min"`` or ``"max"``, and
        the score an epoch must beat to be the first best (default: the first validated epoch is).
    patience
        Stop after this many validated epochs without a better score (``None``: never early).
    history
        The list the records are appended to (default a new one), for callbacks that read it during the loop.
    mark_best
        Set ``record["best"] = True`` on each better epoch.
    on_best, on_epoch
        Called with the record of each better epoch, and of each epoch.
    progress
        A progress bar over the epochs (tqdm) with this description.
    """
    import torch

    from eosin._device import autocast

    if mode not in ("min", "max"):
        raise UsageError(f"mode must be min or max, not {mode!r}.")
    if scheduler_interval not in ("step", "epoch"):
        raise UsageError(f"scheduler_interval must be step or epoch, not {scheduler_interval!r}.")
    score_of = monitor if callable(monitor) else (lambda r: r[monitor])
    make_record = record or _default_record
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")  # bf16 has float32's range: no scaling
    history = [] if history is None else history
    result = LoopResult(history)
    best, best_state, waited, step = baseline, None, 0, 0
    epoch_range: Iterable[int] = range(epochs)
    if progress is not None:
        from tqdm.auto import tqdm

        epoch_range = tqdm(epoch_range, desc=progress, unit="epoch")
    for epoch in epoch_range:
        if model is not None:
            model.train()
        stats = EpochStats(epoch + 1)
        t0 = time.perf_counter()
        for batch in data(epoch) if callable(data) else data:
            with autocast(device, precision):
                out = forward(batch)
            value = out if loss is None else loss(out, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            if after_step is not None:
                after_step()
            n = 1 if size is None else size(batch)
            v = float(value.detach())
            stats.losses.append(v)
            stats.loss_sum += v * n
            stats.seen += n
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        stats.seconds, stats.steps = time.perf_counter() - t0, step
        result.steps = step
        val = validate() if validate is not None else None
        rec = make_record(stats, val)
        history.append(rec)
        improved = False
        if val is not None or baseline is not None:
            score = score_of(rec)
            if best is None or (score < best if mode == "min" else score > best):
                improved, best, waited = True, score, 0
                result.best_epoch, result.best_score = stats.epoch, score
                if keep_best and model is not None:
                    best_state = copy.deepcopy(model.state_dict())
                if mark_best:
                    rec["best"] = True
            elif val is not None:
                waited += 1
        if improved and on_best is not None:
            on_best(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if max_steps is not None and step >= max_steps:
            break
        if val is not None and patience is not None and waited >= patience:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
