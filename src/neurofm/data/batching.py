"""Batches of windows: a padding collate that mixes montages, and a shape-grouping sampler.

:func:`collate_windows` turns :class:`~neurofm.data.windows.WindowDataset` items into the batch
dictionary every objective takes: windows with fewer channels are padded with zero rows whose
``channel_mask`` is ``False``, so one batch can mix montages. When padding is unwanted,
:class:`ShapeGroupedBatchSampler` only puts windows with the same channel set in a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack window items into a batch, padding channels to the widest window.

    Returns ``"signal"`` float32 ``[B, C_max, T]`` (padding rows are 0), ``"channel_index"`` long
    ``[B, C_max]`` (padding 0), ``"channel_mask"`` bool ``[B, C_max]`` (True = real channel),
    ``"index"`` long ``[B]``, ``"label"`` ``[B]`` when every item has one, ``"sfreq"`` when all
    items share it, and the lists ``"recording_id"`` and ``"subject"``.
    """
    if not items:
        raise ValueError("cannot collate an empty list of windows")
    lengths = {item["signal"].shape[-1] for item in items}
    if len(lengths) != 1:
        raise ValueError(f"windows of one batch must share their length, got {sorted(lengths)}")
    n_times = lengths.pop()
    widest = max(item["signal"].shape[0] for item in items)
    # Assembled in numpy: torch's multi-threaded small copies stall on busy CPUs (measured 100x).
    signal = np.zeros((len(items), widest, n_times), dtype=np.float32)
    channel_index = np.zeros((len(items), widest), dtype=np.int64)
    channel_mask = np.zeros((len(items), widest), dtype=bool)
    for row, item in enumerate(items):
        n_channels = item["signal"].shape[0]
        signal[row, :n_channels] = np.asarray(item["signal"], dtype=np.float32)
        channel_index[row, :n_channels] = np.asarray(item["channel_index"])
        channel_mask[row, :n_channels] = True
    batch: dict[str, Any] = {
        "signal": torch.from_numpy(signal),
        "channel_index": torch.from_numpy(channel_index),
        "channel_mask": torch.from_numpy(channel_mask),
    }
    if all("index" in item for item in items):
        batch["index"] = torch.as_tensor([int(item["index"]) for item in items], dtype=torch.long)
    if all("label" in item for item in items):
        batch["label"] = torch.stack([torch.as_tensor(item["label"]) for item in items])
    rates = {item.get("sfreq") for item in items}
    rate = rates.pop() if len(rates) == 1 else None
    if rate is not None:
        batch["sfreq"] = float(rate)
    for key in ("recording_id", "subject"):
        if all(key in item for item in items):
            batch[key] = [item[key] for item in items]
    return batch


class ShapeGroupedBatchSampler(Sampler[list[int]]):
    """Batches of window indices in which every window has the same channel set.

    Windows are grouped by ``group_ids`` (e.g. :meth:`WindowDataset.channel_set_ids`), shuffled
    within their group and cut into batches; batch order is shuffled too. The order depends only on
    ``seed`` and the epoch (:meth:`set_epoch`). With ``num_replicas > 1`` (default: the
    ``torch.distributed`` world size when initialised) each rank takes every ``num_replicas``-th
    batch; the batch list is padded by repeating its first batches so every rank runs the same
    number of steps, as ``DistributedSampler`` does.

    Args:
        group_ids: one int per window.
        batch_size: windows per batch.
        shuffle: shuffle within groups and the batch order (else the index order).
        seed: base seed; the epoch is added.
        drop_last: drop each group's final short batch.
        num_replicas, rank: distributed data parallel position.
    """

    def __init__(
        self,
        group_ids: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside 0..{self.num_replicas - 1}")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (call before each epoch, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for group in np.unique(self.group_ids):
            members = np.flatnonzero(self.group_ids == group)
            if self.shuffle:
                members = rng.permutation(members)
            for begin in range(0, len(members), self.batch_size):
                batch = members[begin : begin + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch.tolist())
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1 and batches:
            shortfall = -len(batches) % self.num_replicas
            batches += [batches[i % len(batches)] for i in range(shortfall)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._all_batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        sizes = np.unique(self.group_ids, return_counts=True)[1]
        full, rest = sizes // self.batch_size, sizes % self.batch_size
        total = int(full.sum() + (0 if self.drop_last else (rest > 0).sum()))
        return (total + self.num_replicas - 1) // self.num_replicas  # ceiling division


__all__ = ["ShapeGroupedBatchSampler", "collate_windows"]
