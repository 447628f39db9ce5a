"""What every training objective returns, so one engine can drive them all.

An objective is an ``nn.Module`` whose ``forward(batch)`` takes the collated batch dictionary
(``signal [B, C, T]``, ``channel_index [B, C]``, ``channel_mask [B, C]``, optionally ``label [B]``
and ``index [B]``) and returns an :class:`ObjectiveOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ObjectiveOutput:
    """The scalar loss to minimise and detached scalar metrics to log (floats or 0-d tensors)."""

    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
