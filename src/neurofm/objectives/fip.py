"""Fourier Inversion Prediction (FIP), Neuro-BERT's pretraining objective (METHODS §6.4).

For each token the head predicts the spectrum of its patch: an amplitude per real-FFT bin,
``Â = softplus(W_A h + b_A)`` (K = P/2+1 bins, non-negative), and a phase per bin as a 2-vector
``(c, s) = W_φ h + b_φ`` normalised to the unit circle (so there is no 2π wrap to learn across).
The Fourier inversion ``x̂ = irfft(Â (ĉ + i ŝ), n=P, norm="ortho")`` turns it back into a patch, and
the loss is the time-domain MSE against the true z-scored patch over masked patches only. The
imaginary parts of the DC and Nyquist bins are dropped by the inverse real FFT, so
``x̂[n] = P^-½ Σ_k w_k Â_k cos(2πkn/P + φ̂_k)`` with ``w_0 = w_{P/2} = 1`` and ``w_k = 2`` otherwise.

That polar head is the specification (``spectrum="polar"``, the default). ``spectrum="cartesian"``
predicts each bin's real and imaginary parts with one linear head instead, as the third-party
neuro2vec code does (METHODS §6.3): the same Fourier inversion and loss, but no softplus and no
phase normalisation, so the loss is quadratic in the head's output. The polar head can stall
where the phase is not yet predictable (its best amplitude is then 0, and a zero amplitude passes
no gradient to the phase); ``docs/neurobert.md`` shows both measured side by side.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.errors import ConfigError
from neurofm.objectives.patch_reconstruction import LossOn, MaskedPatchEncoder, MaskedPatchObjective
from neurofm.objectives.registry import BuildContext, ObjectiveSpec, build_model, register_objective

PHASE_NORM_EPS = 1e-6
Spectrum = Literal["polar", "cartesian"]
SPECTRA: tuple[Spectrum, ...] = ("polar", "cartesian")


def normalise_phase(phase_vec: torch.Tensor, eps: float = PHASE_NORM_EPS) -> torch.Tensor:
    """Scale 2-vectors ``[..., K, 2]`` to unit length: ``(c, s) / max(‖(c, s)‖, eps)``."""
    return phase_vec / phase_vec.norm(dim=-1, keepdim=True).clamp_min(eps)


def fip_reconstruct(amplitude: torch.Tensor, phase_vec: torch.Tensor, patch_len: int
                    ) -> torch.Tensor:
    """Invert a predicted half-spectrum to a time-domain patch.

    Args:
        amplitude: ``[..., K]`` non-negative bin amplitudes (orthonormal rfft scale), K = P/2+1.
        phase_vec: ``[..., K, 2]`` phase as (cos, sin) 2-vectors; normalised here.
        patch_len: P, the patch length in samples (even).
    Returns:
        ``[..., P]`` float32 patch, ``irfft(amplitude * (c + i s), n=P, norm="ortho")``.
    """
    unit = normalise_phase(phase_vec.float())
    spectrum = torch.complex(amplitude.float() * unit[..., 0], amplitude.float() * unit[..., 1])
    return torch.fft.irfft(spectrum, n=patch_len, norm="ortho")


def patch_spectrum(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """True FIP targets of ``patches [..., P]``: amplitude ``[..., K]`` and unit phase ``[..., K, 2]``.

    ``fip_reconstruct(*patch_spectrum(x), P)`` returns ``x`` (up to float32 rounding).
    """
    spectrum = torch.fft.rfft(patches.float(), norm="ortho")
    phase_vec = torch.stack((spectrum.real, spectrum.imag), dim=-1)
    return spectrum.abs(), normalise_phase(phase_vec)


class FourierInversionPrediction(MaskedPatchObjective):
    """FIP over a Neuro-BERT encoder (any :class:`MaskedPatchEncoder`): ``forward(batch) -> ObjectiveOutput``.

    Args:
        model: the encoder; ``model.config.patch_len`` fixes P and K.
        mask_ratio: fraction of real tokens masked (default 0.5).
        loss_on: ``"masked"`` (default) or ``"all"`` real patches (the neuro2vec-style ablation).
        spectrum: ``"polar"`` (METHODS §6.4: softplus amplitude and unit phase vector) or
            ``"cartesian"`` (real and imaginary parts, as the third-party code).
        generator: optional seeded generator for the masks.
    """

    name = "fip"

    # The spectrum heads (added in __init__: amplitude and phase, or one Cartesian head).
    amplitude_head: nn.Linear
    phase_head: nn.Linear
    spectrum_head: nn.Linear

    def __init__(self, model: MaskedPatchEncoder, mask_ratio: float = 0.5, loss_on: LossOn = "masked",
                 spectrum: Spectrum = "polar", generator: torch.Generator | None = None) -> None:
        super().__init__(model, mask_ratio=mask_ratio, loss_on=loss_on, generator=generator)
        if spectrum not in SPECTRA:
            raise ConfigError(f"spectrum={spectrum!r}: use one of {SPECTRA}")
        self.spectrum = spectrum
        dim, bins = model.config.embed_dim, model.config.n_bins
        if spectrum == "polar":
            heads = {"amplitude_head": nn.Linear(dim, model.head_channels * bins),
                     "phase_head": nn.Linear(dim, model.head_channels * bins * 2)}
        else:
            heads = {"spectrum_head": nn.Linear(dim, model.head_channels * bins * 2)}
        for name, head in heads.items():
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            self.add_module(name, head)

    def predict_spectrum(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Amplitude ``[B, L, K]`` (>= 0) and unit phase ``[B, L, K, 2]`` from ``hidden [B, L, D]``.

        In mixed mode a channel axis follows L: ``[B, A, C, K]`` and ``[B, A, C, K, 2]``.
        Computed in float32 even under autocast (the FFT has no bf16 path). A Cartesian head's
        (real, imaginary) pairs are returned as their modulus and direction.
        """
        if self.spectrum == "cartesian":
            parts = self._cartesian_parts(hidden)
            return parts.norm(dim=-1), normalise_phase(parts)
        bins = self.model.config.n_bins
        amplitude = F.softplus(self.amplitude_head(hidden).float())
        phase_vec = self.split_per_channel(self.phase_head(hidden).float(), bins, 2)
        return self.split_per_channel(amplitude, bins), normalise_phase(phase_vec)

    def reconstruct(self, hidden: torch.Tensor) -> torch.Tensor:
        """Patches ``[B, L, P]`` (or ``[B, A, C, P]``) by Fourier inversion of the predicted spectrum."""
        patch_len = self.model.config.patch_len
        if self.spectrum == "cartesian":
            parts = self._cartesian_parts(hidden)
            return torch.fft.irfft(torch.complex(parts[..., 0], parts[..., 1]), n=patch_len, norm="ortho")
        amplitude, phase_vec = self.predict_spectrum(hidden)
        return fip_reconstruct(amplitude, phase_vec, patch_len)

    def _cartesian_parts(self, hidden: torch.Tensor) -> torch.Tensor:
        """The Cartesian head's (real, imaginary) pairs ``[..., K, 2]``, in float32."""
        return self.split_per_channel(self.spectrum_head(hidden).float(), self.model.config.n_bins, 2)


def _build(config: Any, context: BuildContext) -> tuple[nn.Module, nn.Module]:
    encoder: Any = build_model(config, MaskedPatchEncoder,  # type: ignore[type-abstract]
                               "--objective fip", n_times=context.window_samples)
    return FourierInversionPrediction(encoder, mask_ratio=config.mask_ratio, loss_on=config.loss_on,
                                      spectrum=config.fip_spectrum), encoder


register_objective(ObjectiveSpec("fip", _build))
