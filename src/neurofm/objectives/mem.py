"""Masked EEG modelling, LaBraM's pretraining objective (METHODS.md §4).

Per sample, exactly ⌈L/2⌉ of its L real tokens are masked (:func:`random_token_mask`); the student
predicts each masked token's VQ-NSP id with its 8192-way head; with symmetric masking a second pass
with the complement mask adds its own cross-entropy. The loss is CE_M + CE_¬M, each a mean over
every masked token of the batch. Targets come from the frozen tokenizer in eval mode, or from a
:class:`~neurofm.objectives.token_cache.TokenTargetCache` keyed by ``batch["index"]``.

``batched_symmetric=True`` runs both passes as one forward of 2B samples sharing one temporal
encoder pass; it computes the same function as two separate passes (tested).
``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the student under autocast on the batch's device
type; the targets are always computed in fp32. A batch may bring its own ``"token_mask" [B, C·A]``
(True = masked) instead of a sampled one, to reproduce a given masking.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.labram import PATCH_SIZE, channel_major_valid
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.vqnsp import VQNSP
from neurofm.objectives.base import ObjectiveOutput
from neurofm.objectives.masking import random_token_mask
from neurofm.objectives.registry import BuildContext, ObjectiveSpec, build_model, register_objective
from neurofm.objectives.token_cache import TokenTargetCache


class MaskedEEGModelling(nn.Module):
    """batch → masked-token cross-entropy (see the module docstring).

    Args:
        model: the masked-modelling network (trained).
        tokenizer: the frozen VQ-NSP tokenizer (kept in eval mode with gradients off); may be None
            when every batch brings ``"token_targets" [B, C·A]`` or the cache holds every window.
        mask_ratio: fraction of each sample's real tokens to mask (0.5).
        symmetric: add the complement-mask pass.
        batched_symmetric: run both passes as one batched forward.
        token_cache: optional cache of targets by ``batch["index"]``.
        autocast_dtype: run the student under autocast in this dtype (None: no autocast).
        generator: seeded generator for the masks.
    """

    def __init__(
        self,
        model: LabramForMaskedEEG,
        tokenizer: VQNSP | None = None,
        mask_ratio: float = 0.5,
        symmetric: bool = True,
        batched_symmetric: bool = True,
        token_cache: TokenTargetCache | None = None,
        autocast_dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.requires_grad_(False)
            tokenizer.eval()
        self.mask_ratio = mask_ratio
        self.symmetric = symmetric
        self.batched_symmetric = batched_symmetric
        self.token_cache = token_cache
        self.autocast_dtype = autocast_dtype
        self.generator = generator

    def train(self, mode: bool = True) -> MaskedEEGModelling:
        super().train(mode)
        # The tokenizer is frozen: training mode would move its codebook.
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    @torch.no_grad()
    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token ids ``[B, C·A]`` of the unmasked batch (−1 at padding)."""
        if "token_targets" in batch:
            return batch["token_targets"]

        def compute() -> torch.Tensor:
            if self.tokenizer is None:
                raise ValueError("masked EEG modelling needs a tokenizer, a token cache holding every "
                                 "window, or batch['token_targets']")
            with torch.autocast(device_type=batch["signal"].device.type, enabled=False):
                return self.tokenizer.get_codebook_indices(batch["signal"], batch["channel_index"],
                                                           batch.get("channel_mask"))

        if self.token_cache is not None and "index" in batch:
            return self.token_cache.targets(batch, compute)
        return compute()

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        signal, channel_index = batch["signal"], batch["channel_index"]
        channel_mask = batch.get("channel_mask")
        batch_size, n_chans, n_samples = signal.shape
        n_patches = n_samples // PATCH_SIZE
        valid = None if channel_mask is None else channel_major_valid(channel_mask.bool(), n_patches)
        masked = batch.get("token_mask")
        if masked is None:
            masked = random_token_mask(batch_size, n_chans * n_patches, self.mask_ratio, valid=valid,
                                       generator=self.generator, device=signal.device)
        targets = self.targets(batch)
        complement = ~masked if valid is None else (~masked & valid)
        with torch.autocast(device_type=signal.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            hidden_sym: torch.Tensor | None
            if self.symmetric and self.batched_symmetric:
                hidden, hidden_sym = self.model.forward_symmetric(signal, channel_index, masked, channel_mask)
            else:
                hidden = self.model(signal, channel_index, masked, channel_mask)
                hidden_sym = (self.model(signal, channel_index, complement, channel_mask)
                              if self.symmetric else None)
            logits = self.model.lm_head(hidden[masked])
            logits_sym = self.model.lm_head(hidden_sym[complement]) if hidden_sym is not None else None
        loss_masked = F.cross_entropy(logits.float(), targets[masked])
        metrics: dict[str, float | torch.Tensor] = {
            "loss_masked": loss_masked.detach(),
            "accuracy_masked": _accuracy(logits, targets[masked]),
        }
        loss = loss_masked
        if logits_sym is not None:
            loss_sym = F.cross_entropy(logits_sym.float(), targets[complement])
            loss = loss + loss_sym
            metrics["loss_symmetric"] = loss_sym.detach()
            metrics["accuracy_symmetric"] = _accuracy(logits_sym, targets[complement])
        return ObjectiveOutput(loss=loss, metrics=metrics)


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose largest logit is the target code. ``max(-1).indices`` rather than
    ``argmax``, which on a CPU is about 5x slower over a code book (26 vs 5 ms for 760 x 8,192
    fp32 logits on one core, torch 2.13)."""
    with torch.no_grad():
        return (logits.max(-1).indices == targets).float().mean()


def _build(config: Any, context: BuildContext) -> tuple[nn.Module, nn.Module]:
    from neurofm.models.saved import load_pretrained
    from neurofm.objectives.token_cache import tokenizer_fingerprint

    assert config.tokenizer is not None  # PretrainConfig requires it for mem
    tokenizer = load_pretrained(config.tokenizer)
    if not isinstance(tokenizer, VQNSP):
        raise CheckpointError(f"--tokenizer {config.tokenizer} holds a {type(tokenizer).__name__}, "
                              "not a VQ-NSP tokenizer; pass the model/ folder of a "
                              "`neurofm tokenizer train` run")
    # The student predicts the tokenizer's codes unless told otherwise.
    student = build_model(config, LabramForMaskedEEG, "--objective mem",
                          vocab_size=tokenizer.quantizer.n_codes)
    if tokenizer.quantizer.n_codes != student.vocab_size:
        raise ConfigError(f"--tokenizer has {tokenizer.quantizer.n_codes} codes but model "
                          f"{config.model} predicts {student.vocab_size}; set "
                          f"model_overrides.vocab_size={tokenizer.quantizer.n_codes}")
    cache = TokenTargetCache(tokenizer_fingerprint(tokenizer), context.run_dir / "token_cache",
                             rank=context.ctx.rank, flush_every=4096)
    return MaskedEEGModelling(student, tokenizer, mask_ratio=config.mask_ratio,
                              symmetric=config.symmetric_masking, token_cache=cache,
                              autocast_dtype=context.autocast_dtype), student


register_objective(ObjectiveSpec("mem", _build, labram_input=True,
                                 parents=lambda config: [("tokenizer", str(config.tokenizer))]))
