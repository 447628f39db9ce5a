"""What FIP and its time-domain ablation share, so the two compare on equal terms.

Both objectives z-score and patch the batch with the encoder (Neuro-BERT, or any network with
the :class:`MaskedPatchEncoder` methods), draw the mask with the one
sampler (:func:`neurofm.objectives.masking.random_token_mask`), run the encoder with mask tokens,
reconstruct every token's patch in the time domain, and score it with the same masked MSE
(METHODS §6.4): ``L = (1/(|M| P)) Σ_{i∈M} ‖x̂_i − x_i‖²``. They differ only in the head
(:meth:`MaskedPatchObjective.reconstruct`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from neurofm.errors import ConfigError
from neurofm.objectives.base import ObjectiveOutput
from neurofm.objectives.masking import random_token_mask

LossOn = Literal["masked", "all"]


@runtime_checkable
class MaskedPatchEncoder(Protocol):
    """What a masked patch objective needs of its encoder (:class:`~neurofm.models.neurobert.NeuroBert`
    is one): ``config`` with ``sfreq``, ``patch_len``, ``n_bins`` and ``embed_dim``; how many
    channels one token stands for; and the patch, validity, target and encoder methods with
    Neuro-BERT's signatures."""

    config: Any

    @property
    def head_channels(self) -> int: ...

    def patchify(self, signal: torch.Tensor, channel_mask: torch.Tensor | None = None
                 ) -> torch.Tensor: ...

    def token_validity(self, channel_mask: torch.Tensor | None, n_chans: int, n_patches: int,
                       batch_size: int, device: torch.device | None = None) -> torch.Tensor: ...

    def patch_targets(self, patches: torch.Tensor) -> torch.Tensor: ...

    def forward_encoder(self, patches: torch.Tensor, token_mask: torch.Tensor | None = None,
                        channel_mask: torch.Tensor | None = None) -> torch.Tensor: ...


def masked_patch_mse(prediction: torch.Tensor, target: torch.Tensor, selected: torch.Tensor
                     ) -> torch.Tensor:
    """Mean squared error over the selected patches only.

    Args:
        prediction, target: ``[..., P]`` patches (same shape).
        selected: bool ``[...]``, True for the patches that count (e.g. the masked ones).
    Returns:
        ``Σ_selected ‖x̂ − x‖² / (n_selected · P)``, a 0-d tensor (0 when nothing is selected).
    """
    per_patch = (prediction.float() - target.float()).pow(2).mean(dim=-1)
    weight = selected.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def spectral_errors(prediction: torch.Tensor, target: torch.Tensor, selected: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude and phase errors of reconstructed patches, over the selected ones.

    Both patches go through ``rfft(norm="ortho")``. Returns ``(amplitude_mse, phase_error)``:
    the MSE of the bin amplitudes, and the amplitude-weighted mean of ``1 − cos Δφ`` (0 for a
    perfect phase, 2 for opposite phase; weighting by the true amplitude keeps near-empty bins,
    whose phase is meaningless, from dominating).
    """
    predicted = torch.fft.rfft(prediction.float(), norm="ortho")
    true = torch.fft.rfft(target.float(), norm="ortho")
    # Weights instead of boolean indexing: no host synchronisation on an accelerator.
    weight = selected.to(torch.float32)[..., None]
    n_bins = weight.sum() * true.shape[-1]
    amplitude_mse = ((predicted.abs() - true.abs()).pow(2) * weight).sum() / n_bins.clamp_min(1.0)
    # |X| (1 − cos Δφ) = |X| − Re(X̂ X*) / |X̂|
    alignment = (predicted * true.conj()).real / predicted.abs().clamp_min(1e-12)
    phase_error = (((true.abs() - alignment) * weight).sum()
                   / (true.abs() * weight).sum().clamp_min(1e-12))
    return amplitude_mse, phase_error


class MaskedPatchObjective(nn.Module, ABC):
    """Masked patch reconstruction over a :class:`MaskedPatchEncoder`; subclasses add the head.

    Args:
        model: the encoder (saved and fine-tuned on its own; the heads live here).
        mask_ratio: fraction of each sample's real tokens replaced by the mask token.
        loss_on: ``"masked"`` (METHODS §6.4) or ``"all"`` real patches (ablation b, as neuro2vec).
        generator: optional seeded generator for reproducible masks.
    """

    name: str = ""

    def __init__(self, model: MaskedPatchEncoder, mask_ratio: float = 0.5, loss_on: LossOn = "masked",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio={mask_ratio}: must be in [0, 1)")
        if loss_on not in ("masked", "all"):
            raise ConfigError(f"loss_on={loss_on!r}: use 'masked' or 'all'")
        if loss_on == "masked" and mask_ratio == 0.0:
            raise ConfigError("mask_ratio=0 masks nothing, so a loss on masked patches is empty; "
                              "set mask_ratio > 0 or loss_on='all'")
        self.model = model
        self.mask_ratio = mask_ratio
        self.loss_on = loss_on
        self.generator = generator

    @abstractmethod
    def reconstruct(self, hidden: torch.Tensor) -> torch.Tensor:
        """Time-domain patches (float32) from encoder output ``hidden [B, L, D]``.

        Shape ``[B, L, P]`` in channel mode, ``[B, A, C, P]`` in mixed mode.
        """

    def split_per_channel(self, flat: torch.Tensor, *per_channel: int) -> torch.Tensor:
        """Head output ``[B, L, head_channels * prod(per_channel)]`` -> ``[B, L, *per_channel]``
        (channel mode) or ``[B, A, C, *per_channel]`` (mixed mode)."""
        batch, tokens, _ = flat.shape
        if self.model.head_channels == 1:
            return flat.reshape(batch, tokens, *per_channel)
        return flat.reshape(batch, tokens, self.model.head_channels, *per_channel)

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """Loss and metrics for a batch (``signal [B, C, T]``, optional ``channel_mask [B, C]``).

        Metrics (detached): ``masked_mse`` (time domain, masked patches), ``amplitude_mse`` and
        ``phase_error`` of the masked reconstructions (see :func:`spectral_errors`).
        """
        signal = batch["signal"]
        channel_mask = batch.get("channel_mask")
        self._check_sfreq(batch.get("sfreq"))
        model = self.model
        patches = model.patchify(signal, channel_mask)
        batch_size, n_chans, n_patches, _ = patches.shape
        valid = model.token_validity(channel_mask, n_chans, n_patches, batch_size, signal.device)
        if not bool(valid.any(dim=1).all()):
            raise ConfigError("a batch sample has no real channel (channel_mask all False)")
        mask = random_token_mask(batch_size, valid.shape[1], self.mask_ratio, valid=valid,
                                 generator=self.generator, device=signal.device)
        hidden = model.forward_encoder(patches, token_mask=mask, channel_mask=channel_mask)
        reconstruction = self.reconstruct(hidden)
        target = model.patch_targets(patches)

        masked = mask
        counted = mask if self.loss_on == "masked" else valid
        if model.head_channels > 1:
            # Mixed mode: a token holds every channel's patch; padded channels never count.
            real = (channel_mask.bool() if channel_mask is not None
                    else torch.ones(batch_size, n_chans, dtype=torch.bool, device=signal.device))
            masked = masked[:, :, None] & real[:, None, :]
            counted = counted[:, :, None] & real[:, None, :]
        loss = masked_patch_mse(reconstruction, target, counted)

        detached = reconstruction.detach()
        amplitude_mse, phase_error = spectral_errors(detached, target, masked)
        metrics: dict[str, float | torch.Tensor] = {
            "masked_mse": (loss.detach() if self.loss_on == "masked"
                           else masked_patch_mse(detached, target, masked)),
            "amplitude_mse": amplitude_mse,
            "phase_error": phase_error,
        }
        return ObjectiveOutput(loss=loss, metrics=metrics)

    def _check_sfreq(self, sfreq: float | torch.Tensor | None) -> None:
        # Patches are fixed sample counts, so a batch at another rate silently changes their meaning.
        if sfreq is None:
            return
        rates = torch.as_tensor(sfreq, dtype=torch.float64).flatten()
        expected = self.model.config.sfreq
        if not bool(torch.all((rates - expected).abs() <= 1e-6 * expected)):
            raise ConfigError(
                f"batch sfreq {rates.unique().tolist()} Hz differs from the model's "
                f"sfreq={expected} Hz; resample the data or build the model with that rate"
            )
