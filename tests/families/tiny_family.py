"""A third model family, defined outside neurofm in one file: the test that a new family needs
nothing but its own module and one registry entry.

A tiny patch transformer: each channel's 1-s patch (z-scored per channel) is one token, a linear
patch embedding, a learned channel embedding, one shared transformer block, mean pooling. It
implements the :class:`~neurofm.models.backbone.Backbone` interface (so fine-tuning, evaluation
and embedding take it) and the masked patch encoder methods (so the ``mae-time`` and ``fip``
objectives pretrain it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from neurofm.errors import ConfigError
from neurofm.models.backbone import Backbone, InputSpec, load_state_strict
from neurofm.models.blocks import Block
from neurofm.models.neurobert import zscore_per_channel
from neurofm.models.registry import register_family, register_model


@dataclass(frozen=True)
class TinyConfig:
    n_outputs: int = 0
    n_times: int = 400
    sfreq: float = 200.0
    patch_len: int = 200
    embed_dim: int = 16
    drop_path: float = 0.0
    input_unit: str = "100uV"
    max_channels: int = 64

    @property
    def n_bins(self) -> int:
        return self.patch_len // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register_family
class TinyPatchNet(Backbone):
    family = "tiny"
    finetune_recipe: ClassVar[dict[str, Any]] = {"drop_path": 0.0, "optim": {"layer_decay": None}}
    head_channels = 1

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.config = TinyConfig(**fields)
        dim = self.config.embed_dim
        self.patch_embed = nn.Linear(self.config.patch_len, dim)
        self.channel_embed = nn.Embedding(self.config.max_channels, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.blocks = nn.ModuleList([Block(dim, 2, 2 * dim, qkv_bias=True, qk_norm=False,
                                           init_values=0.0, drop_path=self.config.drop_path)])
        self.norm = nn.LayerNorm(dim)
        self.head: nn.Module = (nn.Linear(dim, self.config.n_outputs) if self.config.n_outputs
                                else nn.Identity())

    # The masked patch encoder methods (what mae-time and fip need) -------------------------

    def patchify(self, signal: torch.Tensor, channel_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        batch, n_chans, n_times = signal.shape
        n_patches = n_times // self.config.patch_len
        signal = zscore_per_channel(signal[..., : n_patches * self.config.patch_len])
        if channel_mask is not None:
            signal = signal * channel_mask[:, :, None].to(signal.dtype)
        return signal.reshape(batch, n_chans, n_patches, self.config.patch_len)

    def token_validity(self, channel_mask: torch.Tensor | None, n_chans: int, n_patches: int,
                       batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        if channel_mask is None:
            return torch.ones(batch_size, n_chans * n_patches, dtype=torch.bool, device=device)
        return channel_mask.bool().repeat_interleave(n_patches, dim=1)

    def patch_targets(self, patches: torch.Tensor) -> torch.Tensor:
        batch, n_chans, n_patches, patch_len = patches.shape
        return patches.reshape(batch, n_chans * n_patches, patch_len)

    def forward_encoder(self, patches: torch.Tensor, token_mask: torch.Tensor | None = None,
                        channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        _, n_chans, n_patches, _ = patches.shape
        tokens = self.patch_embed(self.patch_targets(patches))
        if token_mask is not None:
            tokens = torch.where(token_mask[..., None], self.mask_token, tokens)
        channel = self.channel_embed(torch.arange(n_chans, device=tokens.device))
        tokens = tokens + channel.repeat_interleave(n_patches, dim=0)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    # The Backbone interface ------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def n_outputs(self) -> int:
        return self.config.n_outputs

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.config.sfreq, self.config.patch_len, self.config.input_unit)

    def patch_features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        mask = batch.get("channel_mask")
        return self.forward_encoder(self.patchify(batch["signal"], mask), channel_mask=mask)

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.patch_features(batch).mean(dim=1)

    def classify(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.head(self.features(batch))

    def reset_head(self, n_outputs: int) -> None:
        self.config = replace(self.config, n_outputs=n_outputs)
        self.head = nn.Linear(self.embed_dim, n_outputs) if n_outputs else nn.Identity()

    def with_head(self, n_outputs: int, drop_path: float) -> TinyPatchNet:
        rebuilt = TinyPatchNet(**{**self.config.to_dict(), "n_outputs": n_outputs,
                                  "drop_path": drop_path})
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        load_state_strict(rebuilt, state, "the backbone", newly_initialised=("head.",))
        return rebuilt

    def check_input(self, sfreq: float, n_times: int, unit: str, where: str,
                    channels: Sequence[str] | None = None) -> None:
        if float(sfreq) != self.config.sfreq or n_times < self.config.patch_len:
            raise ConfigError(f"{where}: the tiny family takes {self.config.sfreq:g} Hz windows of "
                              f"at least {self.config.patch_len} samples")
        self.config = replace(self.config, n_times=int(n_times), input_unit=unit)

    def saved_config(self) -> dict[str, Any]:
        return {"architecture": self.config.to_dict(), "sfreq": self.config.sfreq,
                "patch_size": self.config.patch_len, "input_unit": self.config.input_unit}

    @classmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> TinyPatchNet:
        return cls(**config["architecture"])


@register_model("tiny_patchnet")
def tiny_patchnet(**overrides: Any) -> TinyPatchNet:
    """The tiny third family."""
    return TinyPatchNet(**overrides)
