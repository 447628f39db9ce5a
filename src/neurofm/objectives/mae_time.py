"""Time-domain masked autoencoding (``objective="mae-time"``), the ablation of FIP (METHODS §6.4 a).

Same encoder, same z-scored patches, same mask sampler and the same masked time-domain MSE as
:mod:`neurofm.objectives.fip`; only the head differs: ``Linear(D -> P)`` regresses each patch
directly instead of predicting its spectrum. Any difference between the two is therefore the
Fourier parameterisation of the target, nothing else.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofm.objectives.patch_reconstruction import LossOn, MaskedPatchEncoder, MaskedPatchObjective
from neurofm.objectives.registry import BuildContext, ObjectiveSpec, build_model, register_objective


class TimeDomainMAE(MaskedPatchObjective):
    """Masked patch regression in the time domain: ``forward(batch) -> ObjectiveOutput``.

    Args: as :class:`neurofm.objectives.fip.FourierInversionPrediction`.
    """

    name = "mae-time"

    def __init__(self, model: MaskedPatchEncoder, mask_ratio: float = 0.5, loss_on: LossOn = "masked",
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model, mask_ratio=mask_ratio, loss_on=loss_on, generator=generator)
        self.time_head = nn.Linear(model.config.embed_dim,
                                   model.head_channels * model.config.patch_len)
        nn.init.trunc_normal_(self.time_head.weight, std=0.02)
        nn.init.zeros_(self.time_head.bias)

    def reconstruct(self, hidden: torch.Tensor) -> torch.Tensor:
        """Patches ``[B, L, P]`` (or ``[B, A, C, P]``) regressed directly from ``hidden [B, L, D]``."""
        return self.split_per_channel(self.time_head(hidden).float(), self.model.config.patch_len)


def _build(config: Any, context: BuildContext) -> tuple[nn.Module, nn.Module]:
    encoder: Any = build_model(config, MaskedPatchEncoder,  # type: ignore[type-abstract]
                               "--objective mae-time", n_times=context.window_samples)
    return TimeDomainMAE(encoder, mask_ratio=config.mask_ratio, loss_on=config.loss_on), encoder


register_objective(ObjectiveSpec("mae-time", _build))
