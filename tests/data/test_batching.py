"""Padding collate and the shape-grouping batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from neurofm.data.batching import ShapeGroupedBatchSampler, collate_windows


def item(n_channels: int, index: int, label: int | None = None, n_times: int = 8) -> dict:
    out = {
        "signal": torch.full((n_channels, n_times), float(index + 1)),
        "channel_index": torch.arange(n_channels) + 10,
        "index": index,
        "sfreq": 200.0,
        "recording_id": f"r{index}",
        "subject": f"s{index}",
    }
    if label is not None:
        out["label"] = torch.tensor(label)
    return out


def test_collate_pads_narrow_windows_with_masked_zero_rows() -> None:
    batch = collate_windows([item(3, 0, 1), item(1, 1, 0)])
    assert batch["signal"].shape == (2, 3, 8)
    assert batch["channel_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["channel_index"].tolist() == [[10, 11, 12], [10, 0, 0]]
    assert batch["signal"][1, 1:].abs().sum() == 0
    assert batch["label"].tolist() == [1, 0] and batch["label"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1]
    assert batch["recording_id"] == ["r0", "r1"] and batch["subject"] == ["s0", "s1"]
    assert batch["sfreq"] == 200.0


def test_collate_leaves_out_label_unless_every_window_has_one() -> None:
    assert "label" not in collate_windows([item(2, 0, 1), item(2, 1)])


def test_collate_refuses_windows_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        collate_windows([item(2, 0, n_times=8), item(2, 1, n_times=9)])


def test_sampler_batches_hold_one_channel_set_and_cover_every_window_once() -> None:
    groups = np.array([0, 1, 0, 1, 1, 0, 2, 0, 1])
    sampler = ShapeGroupedBatchSampler(groups, batch_size=2, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert all(len(set(groups[b])) == 1 for b in batches)


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    groups = np.repeat([0, 1, 2], 10)
    first = ShapeGroupedBatchSampler(groups, 4, seed=1)
    again = ShapeGroupedBatchSampler(groups, 4, seed=1)
    assert list(first) == list(again)
    first.set_epoch(1)
    assert list(first) != list(again)
    again.set_epoch(1)
    assert list(first) == list(again)


def test_sampler_drop_last_keeps_only_full_batches() -> None:
    sampler = ShapeGroupedBatchSampler(np.repeat([0, 1], [5, 3]), 2, drop_last=True)
    assert all(len(b) == 2 for b in sampler) and len(sampler) == 3 == len(list(sampler))


def test_sampler_ranks_get_disjoint_equal_shares() -> None:
    groups = np.repeat([0, 1, 2], [7, 5, 3])
    ranks = [ShapeGroupedBatchSampler(groups, 2, seed=0, num_replicas=3, rank=r) for r in range(3)]
    shares = [list(s) for s in ranks]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(ranks[0])
    whole = list(ShapeGroupedBatchSampler(groups, 2, seed=0))
    covered = {i for share in shares for b in share for i in b}
    assert covered == set(range(len(groups)))
    assert sum(len(s) for s in shares) - len(whole) < 3


def test_sampler_and_collate_drive_a_dataloader() -> None:
    data = [item(2 + i % 2, i, label=i % 2) for i in range(6)]
    groups = [2 + i % 2 for i in range(6)]
    loader = DataLoader(
        data,
        batch_sampler=ShapeGroupedBatchSampler(groups, 3, seed=0),
        collate_fn=collate_windows,
    )
    batches = list(loader)
    assert len(batches) == 2
    assert all(bool(b["channel_mask"].all()) for b in batches)
