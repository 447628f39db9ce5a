"""The deterministic, resumable, rank-sharded order in which training windows are visited.

Epoch ``e`` is a list of *global* batches (``batch_size * world_size`` dataset indices each),
a pure function of ``(seed, e)``; rank ``r`` takes the ``r``-th slice of every global batch, as
:class:`~torch.utils.data.DistributedSampler` would. Two runs with the same seed and global batch
therefore see the same windows per optimizer step whatever their number of processes, and a
resumed run continues from the saved position without replaying the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

# (epoch, global batch size) -> list of global batches of dataset indices.
GlobalBatches = Callable[[int, int], list[list[int]]]


class EpochBatchSampler(Protocol):
    """A batch sampler that reshuffles per epoch (e.g. the shape-grouped sampler of the corpus)."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self): ...


def shuffled_batches(num_samples: int, seed: int) -> GlobalBatches:
    """Global batches from a seeded permutation of ``range(num_samples)``; the last incomplete
    batch is dropped so that every rank gets a full slice."""

    def batches(epoch: int, global_batch_size: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(num_samples, generator=generator).tolist()
        full = num_samples // global_batch_size * global_batch_size
        return [order[i:i + global_batch_size] for i in range(0, full, global_batch_size)]

    return batches


def sampler_batches(sampler: EpochBatchSampler) -> GlobalBatches:
    """Global batches from an epoch-aware batch sampler built with the *global* batch size
    (shape-grouped batching); batches of any other size (a group's remainder) are dropped."""

    def batches(epoch: int, global_batch_size: int) -> list[list[int]]:
        sampler.set_epoch(epoch)
        return [list(batch) for batch in sampler if len(batch) == global_batch_size]

    return batches


class DataOrder:
    """This rank's micro-batches for each epoch, with a resumable position.

    Args:
        global_batches: the epoch -> global batches function.
        batch_size: micro-batch size per rank.
        rank, world_size: this process's share.
    """

    def __init__(self, global_batches: GlobalBatches, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.global_batches = global_batches
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of ``epoch`` (each ``batch_size`` dataset indices)."""
        if self._cache is None or self._cache[0] != epoch:
            lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
            mine = [batch[lo:hi] for batch in self.global_batches(epoch, self.batch_size * self.world_size)]
            self._cache = (epoch, mine)
        return self._cache[1]

    def micro_batches_per_epoch(self) -> int:
        """How many micro-batches each rank sees per epoch (epoch 0; the count is the same for
        every epoch when batches are not shape-grouped)."""
        return len(self.epoch(0))


def round_robin(batches: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Whole batches ``rank, rank + world_size, ...``: how evaluation shares its batches."""
    return list(batches[rank::world_size])
