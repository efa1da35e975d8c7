"""A PyTorch view of a tile table: decoding and augmentation in DataLoader worker processes, class balancing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler, WeightedRandomSampler

from eosin.data._augment import Augment, resize_tile
from eosin.data._table import TileTable, read_tile
from eosin.errors import UsageError

__all__ = [
    "BALANCING",
    "TileDataset",
    "choose_loader_workers",
    "default_loader_workers",
    "make_loader",
    "to_input",
]

BALANCING = ("weighted", "oversample", "none")


class TileDataset(Dataset):
    """Item ``i``: the tile decoded (and augmented) as a ``(size, size, 3)`` uint8 tensor, and its class index.

    Tiles stay uint8 channels-last until the model's process (:func:`to_input`), so workers ship a quarter of
    the bytes that float tensors would be.
    """

    def __init__(self, table: TileTable, *, size: int, augment: Augment | None = None):
        self.table = table
        self.size = size
        self.augment = augment
        self.targets = table.label_index

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        box = None if self.table.boxes is None else self.table.boxes[i]
        tile = read_tile(self.table.paths[i], box)
        if self.augment is not None:
            tile = self.augment(tile)
        tile = resize_tile(tile, self.size)
        return torch.from_numpy(np.ascontiguousarray(tile)), int(self.targets[i])


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    if getattr(dataset, "augment", None) is not None:
        dataset.augment.reseed(info.seed % 2**32)  # torch draws a new base seed per epoch


def balanced_indices(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices where every class appears as often as the largest one (minority rows repeated at random)."""
    classes, counts = np.unique(targets, return_counts=True)
    top = counts.max()
    parts = []
    for c, n in zip(classes, counts, strict=True):
        rows = np.flatnonzero(targets == c)
        parts.append(np.concatenate([rows, rng.choice(rows, size=top - n, replace=True)]))
    return np.concatenate(parts)


def default_loader_workers() -> int:
    """CPUs - 2, at most 8; none on a machine of 2 CPUs or fewer, where a worker only takes a core from the model
    (decoding and augmenting a 224 px tile costs ~12 ms against ~340 ms of ResNet-18 training on such a CPU)."""
    import os

    cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 2))


def choose_loader_workers(
    input_ms: float, step_ms: float, *, cpus: int | None = None, device_type: str = "cpu"
) -> tuple[int, int]:
    """Worker processes (and PyTorch threads) that feed a model fastest, from two measurements.

    ``input_ms``: decoding and augmenting one tile on one core; ``step_ms``: one training step per tile with all
    ``cpus`` threads (CPU) or on the GPU. In process a tile costs ``input_ms + step_ms``. With ``w`` workers:

    - on a CPU the model keeps ``cpus - w`` threads (a worker's core is taken from it; sharing cores with more
      threads than cores stalls PyTorch's thread pool), so a tile costs ``max(step_ms * cpus / (cpus - w),
      input_ms / w)``;
    - on a GPU the CPUs are free: ``max(step_ms, input_ms / w)``.

    Returns ``(w, threads)`` minimising that cost (fewer workers on ties); ``threads`` is the PyTorch thread
    count to train with. On a 2-core CPU, ResNet-18 (~40 ms a tile) against ~3 ms of input, this is ``(0, 2)``.
    """
    import os

    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = max(1, int(cpus))
    gpu = device_type != "cpu"
    best, best_cost = 0, input_ms + step_ms
    for w in range(1, min(cpus - 1, 16) + 1):  # the training process keeps a core
        compute = step_ms if gpu else step_ms * cpus / (cpus - w)
        cost = max(compute, input_ms / w)
        if cost < best_cost * 0.97:  # a worker must win clearly: it also costs memory and start-up
            best, best_cost = w, cost
        if input_ms / w <= compute:  # keeping up already: more workers only take cores
            break
    return best, cpus if gpu or best == 0 else cpus - best


def apply_loader_plan(
    input_ms: float, step_ms: float, *, device_type: str, unit: str
) -> tuple[int | None, dict]:
    """Choose loader workers with :func:`choose_loader_workers` and set PyTorch's threads to match.

    Returns ``(threads before, or None when unchanged, plan)``; the plan is the record a training run states
    (``workers``, ``torch_threads``, ``input_ms_per_<unit>``, ``step_ms_per_<unit>``, ``how``). The caller puts
    the threads back when training ends.
    """
    import torch

    n, threads = choose_loader_workers(input_ms, step_ms, device_type=device_type)
    before: int | None = torch.get_num_threads()
    if device_type == "cpu" and threads != before:
        torch.set_num_threads(threads)
    else:
        before = None
    plan = {
        "workers": n,
        "torch_threads": torch.get_num_threads(),
        f"input_ms_per_{unit}": round(input_ms, 2),
        f"step_ms_per_{unit}": step_ms,
        "how": "measured",
    }
    return before, plan


def make_loader(
    table: TileTable,
    *,
    size: int,
    batch_size: int = 32,
    balance: str = "none",
    augment: Augment | bool | None = None,
    shuffle: bool = True,
    workers: int | None = None,
    seed: int = 0,
    drop_last: bool = False,
    positive_fraction: float | None = None,
    positive_class: str | list[str] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``table`` yielding ``(uint8 (N, size, size, 3), int64 (N,))`` batches.

    Parameters
    ----------
    balance
        ``"weighted"``: sample with replacement, each class equally likely (``WeightedRandomSampler``);
        ``"oversample"``: every epoch holds each class as often as the largest (minority tiles repeated);
        ``"none"``: the table as it is (shuffled when ``shuffle``).
    augment
        An :class:`Augment`, True for the default one, or None/False.
    workers
        DataLoader worker processes that decode and augment while the model computes (default:
        :func:`default_loader_workers`; 0: in this process; :func:`choose_loader_workers` picks by measurement).
    pin_memory
        Batches in page-locked memory (a background thread of the loader), for non-blocking copies to a GPU.
    positive_fraction, positive_class
        Every batch holds this share of tiles of ``positive_class`` (default: the rarest class), the rest from
        the other classes (:class:`~eosin.data.PositiveFractionBatches`, Foucart et al.); replaces ``balance``.
    """
    if balance not in BALANCING:
        raise UsageError(f"balance must be one of {list(BALANCING)}, not {balance!r}.")
    if augment is True:
        augment = Augment(seed=seed)
    dataset = TileDataset(table, size=size, augment=augment or None)
    generator = torch.Generator().manual_seed(seed)
    sampler: Any = None
    targets = dataset.targets
    if balance == "weighted" and shuffle:
        counts = np.bincount(targets, minlength=len(table.classes)).astype(np.float64)
        weights = 1.0 / counts[targets]
        sampler = WeightedRandomSampler(torch.from_numpy(weights), len(targets), generator=generator)
    elif balance == "oversample" and shuffle:
        idx = balanced_indices(targets, np.random.default_rng(seed))
        sampler = SubsetRandomSampler(idx.tolist(), generator=generator)
    if workers is None:
        workers = default_loader_workers()
    common = {
        "num_workers": workers,
        "worker_init_fn": _seed_worker if workers else None,
        "generator": generator,
        "persistent_workers": workers > 0,
        "prefetch_factor": 4 if workers else None,
        "pin_memory": pin_memory,
    }
    if positive_fraction is not None and shuffle:
        from eosin.data._balance import PositiveFractionBatches

        batches = PositiveFractionBatches(
            targets,
            _positive(table, positive_class),
            fraction=positive_fraction,
            batch_size=batch_size,
            seed=seed,
        )
        return DataLoader(dataset, batch_sampler=batches, **common)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle and sampler is None,
        drop_last=drop_last,
        **common,
    )


def _positive(table: TileTable, positive_class: str | list[str] | None) -> list[int]:
    """Class indices of the positive class(es); the rarest class when none is named."""
    from eosin.errors import UnknownNameError

    if positive_class is None:
        counts = table.counts()
        return [table.classes.index(min(counts, key=lambda c: (counts[c], c)))]
    names = [positive_class] if isinstance(positive_class, str) else list(positive_class)
    for name in names:
        if name not in table.classes:
            raise UnknownNameError("positive class", name, table.classes)
    return [table.classes.index(n) for n in names]


def to_input(images: torch.Tensor, mean, std, device) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` to normalized float ``(N, 3, H, W)`` on ``device``, channels_last in memory."""
    pin = device.type == "cuda"
    x = images.pin_memory() if pin and not images.is_pinned() else images
    x = x.to(device, non_blocking=pin).permute(0, 3, 1, 2).float()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0
    return x.sub_(m).div_(s).contiguous(memory_format=torch.channels_last)
