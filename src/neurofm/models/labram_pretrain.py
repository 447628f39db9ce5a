"""LaBraM's masked-EEG-modelling network: the student transformer, a mask token, an 8192-way head.

METHODS.md §4: the temporal encoder runs on the *unmasked* signal; masked positions are replaced
by the mask token before the spatial and time embeddings are added; the blocks and the final
LayerNorm follow, then ``lm_head`` predicts each masked position's VQ-NSP token. As in the official
``modeling_pretrain.py`` the cls token gets the first channel's spatial row (a quirk that matters
only for bit-exact reproduction).

Because both symmetric passes share the unmasked signal, :meth:`LabramForMaskedEEG.forward_symmetric`
runs the temporal encoder once and the blocks on one batch of 2B samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from neurofm.models.backbone import SavedModel, load_state_strict
from neurofm.models.labram import (
    INPUT_UNIT,
    LABRAM_CONFIGS,
    PATCH_SIZE,
    SAMPLING_RATE,
    Labram,
    LabramConfig,
    NeuralTransformer,
    as_patches,
    channel_major_valid,
)
from neurofm.models.registry import register_family, register_model

#: Size of the VQ-NSP codebook the head predicts.
VOCAB_SIZE = 8192


@register_family
class LabramForMaskedEEG(nn.Module, SavedModel):
    """Student transformer + mask token + ``lm_head`` (``Linear(D, vocab_size)``).

    Inputs everywhere: ``x [B, N, T]`` or ``[B, N, A, 200]`` in 100 µV, ``channel_index [B, N]``
    vocabulary indices, ``masked [B, N·A]`` bool (True = replaced by the mask token),
    optional ``channel_mask [B, N]`` (True = real channel). :meth:`as_backbone` gives the
    fine-tuning backbone.
    """

    family = "labram_mem"

    def __init__(self, config: LabramConfig = LabramConfig(), vocab_size: int = VOCAB_SIZE) -> None:
        super().__init__()
        config = replace(config, use_mean_pooling=False)
        self.config = config
        self.vocab_size = vocab_size
        self.student = NeuralTransformer(config, cls_spatial_row="first_channel")
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.lm_head = nn.Linear(config.embed_dim, vocab_size)
        # The pretraining code truncates its normal init at ±1 std (0.02 absolute).
        self.student.init_weights(truncation=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        nn.init.trunc_normal_(self.lm_head.weight, std=0.02, a=-0.02, b=0.02)
        nn.init.zeros_(self.lm_head.bias)

    def _tokens(self, x: torch.Tensor, channel_mask: torch.Tensor | None):
        patches = as_patches(x)
        batch, n_chans, n_patches, _ = patches.shape
        tokens = patches.reshape(batch, n_chans * n_patches, PATCH_SIZE)
        token_valid = None
        if channel_mask is not None and not bool(channel_mask.all()):
            token_valid = channel_major_valid(channel_mask.to(torch.bool), n_patches)
        return tokens, n_patches, token_valid

    def forward(
        self,
        x: torch.Tensor,
        channel_index: torch.Tensor,
        masked: torch.Tensor,
        channel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normed patch tokens ``[B, N·A, D]`` of one masked pass (apply ``lm_head`` to the
        positions to predict)."""
        tokens, n_patches, token_valid = self._tokens(x, channel_mask)
        hidden = self.student.encode(tokens, channel_index, n_patches, token_valid, masked,
                                     self.mask_token)
        return self.student.norm(hidden)[:, 1:]

    def forward_symmetric(
        self,
        x: torch.Tensor,
        channel_index: torch.Tensor,
        masked: torch.Tensor,
        channel_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both symmetric passes (mask ``masked`` and its complement over real tokens) as one
        batched forward; returns the normed patch tokens ``[B, N·A, D]`` of each pass."""
        tokens, n_patches, token_valid = self._tokens(x, channel_mask)
        # The temporal encoder sees the unmasked signal in both passes: compute it once.
        embeddings = self.student.patch_embed(tokens, token_valid)
        complement = ~masked if token_valid is None else (~masked & token_valid)
        both_valid = None if token_valid is None else torch.cat((token_valid, token_valid))
        hidden = self.student.encode(
            torch.cat((tokens, tokens)), torch.cat((channel_index, channel_index)), n_patches,
            both_valid, torch.cat((masked, complement)), self.mask_token,
            patch_embeddings=torch.cat((embeddings, embeddings)),
        )
        normed = self.student.norm(hidden)[:, 1:]
        return normed[: x.shape[0]], normed[x.shape[0]:]


    def as_backbone(self, n_outputs: int = 0) -> Labram:
        """The fine-tuning :class:`Labram` (eval mode): the student's weights without its final
        norm; fc_norm and a head of ``n_outputs`` newly initialised, as the official fine-tuning
        script does with ``labram-base.pth``."""
        state = {k: v for k, v in self.student.state_dict().items() if not k.startswith("norm.")}
        model = Labram(n_outputs=n_outputs, config=replace(self.config, use_mean_pooling=True))
        load_state_strict(model, state, "the masked-modelling network's student",
                          newly_initialised=("fc_norm.", "head."))
        return model.eval()

    def saved_config(self) -> dict[str, Any]:
        return {"architecture": self.config.to_dict(), "sfreq": SAMPLING_RATE,
                "patch_size": PATCH_SIZE, "input_unit": INPUT_UNIT, "vocab_size": self.vocab_size}

    @classmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> LabramForMaskedEEG:
        return cls(LabramConfig(**config["architecture"]), vocab_size=config["vocab_size"])


def build_labram_mem(size: str, **overrides: Any) -> LabramForMaskedEEG:
    """A masked-EEG-modelling network of a named size (config fields as overrides)."""
    vocab_size = overrides.pop("vocab_size", VOCAB_SIZE)
    return LabramForMaskedEEG(replace(LABRAM_CONFIGS[size], **overrides), vocab_size=vocab_size)


@register_model("labram_base_mem")
def labram_base_mem(**overrides: Any) -> LabramForMaskedEEG:
    """LaBraM-Base masked-EEG-modelling network (7.47M parameters with mask token and head)."""
    return build_labram_mem("base", **overrides)


@register_model("labram_large_mem")
def labram_large_mem(**overrides: Any) -> LabramForMaskedEEG:
    """LaBraM-Large masked-EEG-modelling network."""
    return build_labram_mem("large", **overrides)


@register_model("labram_huge_mem")
def labram_huge_mem(**overrides: Any) -> LabramForMaskedEEG:
    """LaBraM-Huge masked-EEG-modelling network."""
    return build_labram_mem("huge", **overrides)


@register_model("labram_small_mem")
def labram_small_mem(**overrides: Any) -> LabramForMaskedEEG:
    """Small masked-EEG-modelling network for tests and CPU demos."""
    return build_labram_mem("small", **overrides)
