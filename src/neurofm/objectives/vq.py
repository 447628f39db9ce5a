"""VQ-NSP tokenizer training objective (METHODS.md §3) and codebook-health metrics.

L_T = MSE(amplitude, Ã) + MSE(phase, φ̃) + β·MSE(sg(z_q), z), each a mean over the elements of real
(non-padding) tokens; Ã and φ̃ are the per-sample z-scored Fourier amplitude and phase of each
patch. The codebook itself moves by its EMA update inside the tokenizer's forward in training mode.

Metrics: the three loss terms, the batch's code perplexity and fraction of codes used, and the
codebook's usage-EMA perplexity and used fraction. A code counts as dead when its usage EMA is
below ``dead_below`` assignments per step or, when ``dead_fraction`` is given, below that fraction
of the mean code's usage (a threshold that scales with batch size and codebook size; an absolute
one either never fires on large batches or always fires on small ones). With
``restart_dead_every = k > 0``, every k-th training step re-seeds the dead codes (a neurofm option
against codebook collapse; the official recipe has no restart) and logs how many were restarted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurofm.models.labram import as_patches
from neurofm.models.vqnsp import VQNSP, fourier_targets
from neurofm.objectives.base import ObjectiveOutput
from neurofm.objectives.registry import BuildContext, ObjectiveSpec, build_model, register_objective


def _masked_mse(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    error = (prediction.float() - target).square()
    return error.mean() if valid is None else error[valid].mean()


class VQNSPObjective(nn.Module):
    """batch → tokenizer loss and codebook metrics.

    Args:
        tokenizer: the VQ-NSP network being trained.
        restart_dead_every: restart dead codes every this many training steps (0: never).
        dead_below: usage-EMA threshold under which a code counts as dead.
        dead_fraction: if given, the threshold is this fraction of the mean code usage instead.
        autocast_dtype: run encoder and decoder under autocast (code assignment stays fp32).
    """

    steps: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, tokenizer: VQNSP, restart_dead_every: int = 0, dead_below: float = 1e-3,
                 dead_fraction: float | None = None,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.restart_dead_every = restart_dead_every
        self.dead_below = dead_below
        self.dead_fraction = dead_fraction
        self.autocast_dtype = autocast_dtype
        # A buffer, not a Python int, so checkpoints carry it and a resumed run keeps the
        # dead-code restart schedule of an uninterrupted one.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        signal, channel_index = batch["signal"], batch["channel_index"]
        channel_mask = batch.get("channel_mask")
        with torch.autocast(device_type=signal.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            out = self.tokenizer(signal, channel_index, channel_mask)
        amplitude, phase = fourier_targets(as_patches(signal), out.token_valid)
        rec_amplitude = _masked_mse(out.amplitude, amplitude, out.token_valid)
        rec_phase = _masked_mse(out.phase, phase, out.token_valid)
        loss = out.quant_loss + rec_amplitude + rec_phase
        quantizer = self.tokenizer.quantizer
        ids = out.token_ids[out.token_ids >= 0]
        counts = torch.bincount(ids, minlength=quantizer.n_codes).float()
        probs = counts / counts.sum().clamp(min=1)
        batch_perplexity = torch.exp(-(probs * probs.clamp(min=1e-12).log()).sum())
        metrics: dict[str, float | torch.Tensor] = {
            "quant_loss": out.quant_loss.detach(),
            "rec_amplitude": rec_amplitude.detach(),
            "rec_phase": rec_phase.detach(),
            "batch_perplexity": batch_perplexity,
            "batch_used_fraction": (counts > 0).float().mean(),
        }
        dead_below = self._dead_threshold()
        usage = quantizer.usage_report(dead_below)
        metrics["codebook_perplexity"] = usage["perplexity"]
        metrics["codebook_used_fraction"] = usage["used_fraction"]
        if self.training:
            self.steps += 1
            if self.restart_dead_every and int(self.steps) % self.restart_dead_every == 0:
                z = out.z.detach().reshape(-1, quantizer.dim)
                if out.token_valid is not None:
                    z = z[out.token_valid.reshape(-1)]
                metrics["restarted_codes"] = float(quantizer.restart_dead_codes(z, dead_below))
        return ObjectiveOutput(loss=loss, metrics=metrics)

    def _dead_threshold(self) -> float:
        if self.dead_fraction is None:
            return self.dead_below
        return self.dead_fraction * float(self.tokenizer.quantizer.usage.mean())


def _build(config: Any, context: BuildContext) -> tuple[nn.Module, nn.Module]:
    tokenizer = build_model(config, VQNSP, "neurofm tokenizer train")
    objective = VQNSPObjective(tokenizer, restart_dead_every=config.restart_dead_every,
                               dead_fraction=config.dead_code_fraction,
                               autocast_dtype=context.autocast_dtype)
    return objective, tokenizer


register_objective(ObjectiveSpec("vq-nsp", _build, labram_input=True))
