"""Neuro-BERT: a plain pre-LN transformer over signal patches (METHODS §6.4).

Data flow, top to bottom::

    signal [B, C, T] --patchify (z-score per channel per window)--> patches [B, C, A, P]
      --patch embedding--> tokens [B, L, D]    (L = C*A channel-major, or A in "mixed" mode)
      --mask token where masked (before positions, BERT style)
      --+ sin-cos time position + learned channel embedding
      --shared Blocks (pre-LN, GELU, qkv bias)--> LayerNorm --> h [B, L, D]
      --mean over real tokens--> LayerNorm --> Linear --> logits [B, n_outputs]

The input is z-scored per channel per window inside the model (:meth:`NeuroBert.patchify`), so
pretraining targets, fine-tuning and inference all see the same normalisation, whatever the
amplitude scale of the recording. ``input_norm`` chooses it: ``"channel"`` (that z-score, METHODS
§6.4), ``"window"`` (each channel centred, one scale per window over its real channels, which keeps
the channels' relative amplitudes, e.g. which muscles are active in EMG) or ``"none"`` (the signal
as given, for data already scaled by the preparation recipe). The checkpointed ``input_unit``
still records what the batch held (``"100uV"`` for EEG, ``"device"`` for raw EMG counts), so a
user knows what was fed.

Two patch modes. ``"channel"`` (default): every channel's patch is its own token, embedded by one
shared ``Linear(P -> D)``; a learned channel embedding indexed by montage position (row order of
the batch, or ``channel_position`` when given) tells channels apart. ``"mixed"`` reproduces the
third-party neuro2vec code: a ``Conv1d(C, D, P, stride=P)`` mixes all channels of a time step into
one token, so there are A tokens and no channel embedding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from neurofm.errors import ConfigError
from neurofm.models.backbone import Backbone, InputSpec, load_state_strict
from neurofm.models.blocks import Block
from neurofm.models.registry import check_sizes, register_family, register_model

PatchMode = Literal["channel", "mixed"]
InputNorm = Literal["channel", "window", "none"]
INPUT_NORMS: tuple[InputNorm, ...] = ("channel", "window", "none")


@dataclass(frozen=True)
class NeuroBertConfig:
    """Everything needed to rebuild a Neuro-BERT network (a checkpoint stores it as JSON).

    ``n_chans`` None means "any number of channels up to ``max_channels``"; in channel mode a
    number only matters as 1 (no channel embedding, one-channel input) or not;
    ``n_outputs`` 0 means no classification head (``forward`` returns pooled features).
    ``n_times`` is the window length the model was built for, in samples at ``sfreq`` Hz;
    ``input_unit`` is the unit of the batch signal (see :mod:`neurofm.data.recording`).
    """

    n_chans: int | None = None
    n_outputs: int = 0
    n_times: int = 2000
    sfreq: float = 200.0
    input_unit: str = "100uV"
    patch_len: int = 200
    patch_mode: PatchMode = "channel"
    input_norm: InputNorm = "channel"
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 512
    drop: float = 0.1
    drop_path: float = 0.0
    max_channels: int = 256
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        check_sizes(self, ("n_times", "patch_len", "embed_dim", "depth", "num_heads", "mlp_dim",
                           "max_channels"))
        if self.patch_len <= 0 or self.patch_len % 2:
            raise ConfigError(
                f"patch_len={self.patch_len}: the patch length must be a positive even number of "
                "samples (the real FFT then has patch_len/2+1 bins); use e.g. 200 (1 s at 200 Hz)"
            )
        if self.patch_mode not in ("channel", "mixed"):
            raise ConfigError(f"patch_mode={self.patch_mode!r}: use 'channel' or 'mixed'")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm={self.input_norm!r}: use one of {INPUT_NORMS}")
        if self.patch_mode == "mixed" and self.n_chans is None:
            raise ConfigError("patch_mode='mixed' mixes a fixed channel set: set n_chans")
        if self.n_chans is not None and not 1 <= self.n_chans <= self.max_channels:
            raise ConfigError(
                f"n_chans={self.n_chans}: must be between 1 and max_channels={self.max_channels}"
            )
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.n_times < self.patch_len:
            raise ConfigError(
                f"n_times={self.n_times} is shorter than one patch ({self.patch_len} samples)"
            )
        if self.sfreq <= 0:
            raise ConfigError(f"sfreq={self.sfreq}: the sampling rate must be positive (Hz)")

    @property
    def n_bins(self) -> int:
        """Real-FFT bins per patch, K = P/2 + 1."""
        return self.patch_len // 2 + 1

    @property
    def uses_channel_embedding(self) -> bool:
        """A channel embedding exists in channel mode unless the model is single-channel."""
        return self.patch_mode == "channel" and self.n_chans != 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (what a checkpoint records)."""
        return asdict(self)


def sincos_time_embedding(n_positions: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal positions ``[n_positions, dim]`` (even dims sin, odd dims cos)."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def zscore_per_channel(signal: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Z-score ``[B, C, T]`` over time, per channel and window; a flat channel becomes zeros."""
    signal = signal.float()
    mean = signal.mean(dim=-1, keepdim=True)
    std = signal.std(dim=-1, keepdim=True, unbiased=False)
    return (signal - mean) / (std + eps)


def zscore_per_window(signal: torch.Tensor, channel_mask: torch.Tensor | None = None,
                      eps: float = 1e-6) -> torch.Tensor:
    """Centre each channel of ``[B, C, T]`` and divide by one standard deviation per window,
    pooled over its real channels (``channel_mask [B, C]``), so relative amplitudes survive."""
    signal = signal.float()
    centred = signal - signal.mean(dim=-1, keepdim=True)
    power = centred.pow(2).mean(dim=-1)  # [B, C]
    if channel_mask is None:
        pooled = power.mean(dim=1)
    else:
        weight = channel_mask.to(power.dtype)
        pooled = (power * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)
    return centred / (pooled.sqrt()[:, None, None] + eps)


@register_family
class NeuroBert(Backbone):
    """Neuro-BERT encoder with a mean-pool classification head (braindecode-style arguments).

    Args:
        n_chans: number of channels, or None for any number (channel mode).
        n_outputs: classes (or regression targets) of the head; 0 for none.
        n_times: window length in samples; sfreq: sampling rate in Hz.
        **architecture: any other :class:`NeuroBertConfig` field (``patch_len``, ``patch_mode``,
            ``embed_dim``, ``depth``, ``num_heads``, ``mlp_dim``, ``drop``, ``input_unit``...).

    As a :class:`~neurofm.models.backbone.Backbone` it takes the batch dictionary and tells
    channels apart by their montage position, as in its pretraining (no ``channel_index``).
    """

    family = "neurobert"
    #: METHODS.md §6.4: lr 3e-4 to 1e-6 over 40 epochs (2 of warm-up), plain cross-entropy, no
    #: layer-wise decay or drop path.
    finetune_recipe: ClassVar[dict[str, Any]] = {
        "drop_path": 0.0, "label_smoothing": 0.0,
        "optim": {"lr": 3e-4, "min_lr": 1e-6, "epochs": 40, "warmup_epochs": 2.0,
                  "layer_decay": None}}
    time_table: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        n_chans: int | None = None,
        n_outputs: int = 0,
        n_times: int = 2000,
        sfreq: float = 200.0,
        **architecture: Any,
    ) -> None:
        super().__init__()
        config = NeuroBertConfig(
            n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq, **architecture
        )
        self.config = config
        dim = config.embed_dim
        if config.patch_mode == "channel":
            self.patch_embed: nn.Module = nn.Linear(config.patch_len, dim)
        else:
            assert config.n_chans is not None  # NeuroBertConfig requires it in mixed mode
            self.patch_embed = nn.Conv1d(
                config.n_chans, dim, kernel_size=config.patch_len, stride=config.patch_len
            )
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.channel_embed = (
            nn.Embedding(config.max_channels, dim) if config.uses_channel_embedding else None
        )
        # Not persistent: fixed values, rebuilt from the config, never part of a checkpoint.
        self.register_buffer(
            "time_table",
            sincos_time_embedding(config.n_times // config.patch_len, dim),
            persistent=False,
        )
        self.pos_drop = nn.Dropout(config.drop)
        # On the CPU even while building on the meta device: the rates are plain numbers.
        drop_path = torch.linspace(0, config.drop_path, config.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_dim, qkv_bias=True, qk_norm=False,
                  init_values=0.0, drop=config.drop, drop_path=rate, norm_eps=config.norm_eps,
                  activation=nn.GELU)
            for rate in drop_path
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.fc_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.head: nn.Module = (
            nn.Linear(dim, config.n_outputs) if config.n_outputs > 0 else nn.Identity()
        )
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if self.channel_embed is not None:
            nn.init.trunc_normal_(self.channel_embed.weight, std=0.02)

    @classmethod
    def from_config(cls, config: NeuroBertConfig | dict[str, Any]) -> NeuroBert:
        """Rebuild from a :class:`NeuroBertConfig` or its ``to_dict()`` (e.g. a checkpoint's JSON)."""
        fields = config.to_dict() if isinstance(config, NeuroBertConfig) else dict(config)
        return cls(**fields)

    # Patches and tokens ---------------------------------------------------------------------

    @property
    def head_channels(self) -> int:
        """Channels one token stands for: 1 in channel mode, ``n_chans`` in mixed mode."""
        if self.config.patch_mode == "channel":
            return 1
        assert self.config.n_chans is not None  # NeuroBertConfig requires it in mixed mode
        return int(self.config.n_chans)

    def patchify(self, signal: torch.Tensor, channel_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Cut ``signal [B, C, T]`` into normalised patches ``[B, C, A, P]`` (float32).

        A = floor(T / P); the remainder is dropped (METHODS §1). By default each channel is
        z-scored over the A*P samples kept, so patches are dimensionless (``input_norm``, see the
        module docstring); padded channels (``channel_mask`` False) are set to zero whatever
        they held.
        """
        batch, n_chans, n_times = signal.shape
        patch_len = self.config.patch_len
        n_patches = n_times // patch_len
        if n_patches == 0:
            raise ConfigError(
                f"a window of {n_times} samples is shorter than one patch ({patch_len} samples); "
                f"use windows of at least {patch_len} samples or a smaller patch_len"
            )
        if self.config.patch_mode == "mixed" and n_chans != self.config.n_chans:
            raise ConfigError(
                f"patch_mode='mixed' was built for n_chans={self.config.n_chans}, got {n_chans} "
                "channels; pad or select channels to match, or use patch_mode='channel'"
            )
        if self.config.n_chans == 1 and n_chans > 1:
            raise ConfigError(
                f"this model was built for one channel (n_chans=1, no channel embedding) and "
                f"cannot tell {n_chans} channels apart; build it with n_chans={n_chans} or None"
            )
        if self.config.uses_channel_embedding and n_chans > self.config.max_channels:
            raise ConfigError(f"{n_chans} channels exceed max_channels={self.config.max_channels}")
        signal = signal[..., : n_patches * patch_len]
        if self.config.input_norm == "channel":
            signal = zscore_per_channel(signal)
        elif self.config.input_norm == "window":
            signal = zscore_per_window(signal, channel_mask)
        else:
            signal = signal.float()
        if channel_mask is not None:
            signal = signal * channel_mask[:, :, None].to(signal.dtype)
        return signal.reshape(batch, n_chans, n_patches, patch_len)

    def token_validity(self, channel_mask: torch.Tensor | None, n_chans: int, n_patches: int,
                       batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        """Bool ``[B, L]``, True for tokens of real channels (all True in mixed mode)."""
        if self.config.patch_mode == "mixed":
            return torch.ones(batch_size, n_patches, dtype=torch.bool, device=device)
        if channel_mask is None:
            return torch.ones(batch_size, n_chans * n_patches, dtype=torch.bool, device=device)
        return channel_mask.bool().repeat_interleave(n_patches, dim=1)

    def patch_targets(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches laid out per token: ``[B, C*A, P]`` (channel mode) or ``[B, A, C, P]`` (mixed)."""
        batch, n_chans, n_patches, patch_len = patches.shape
        if self.config.patch_mode == "channel":
            return patches.reshape(batch, n_chans * n_patches, patch_len)
        return patches.permute(0, 2, 1, 3)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embedding without positions: ``[B, C, A, P] -> [B, L, D]``."""
        batch, n_chans, n_patches, patch_len = patches.shape
        if self.config.patch_mode == "channel":
            return self.patch_embed(patches.reshape(batch, n_chans * n_patches, patch_len))
        flat = patches.reshape(batch, n_chans, n_patches * patch_len)
        return self.patch_embed(flat).transpose(1, 2)

    # Encoder ----------------------------------------------------------------------------------

    def forward_encoder(
        self,
        patches: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
        channel_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode z-scored ``patches [B, C, A, P]`` into ``h [B, L, D]`` (after the final norm).

        Args:
            token_mask: bool ``[B, L]``, True where the token is replaced by the mask token.
            channel_mask: bool ``[B, C]``, False for padded channels; their tokens are hidden
                from attention, so real tokens do not depend on them.
            channel_position: long ``[B, C]`` or ``[C]`` rows of the channel embedding
                (< ``max_channels``); by default the montage position 0..C-1.
        """
        batch, n_chans, n_patches, _ = patches.shape
        tokens = self.embed(patches)
        if token_mask is not None:
            tokens = torch.where(token_mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        if n_patches <= self.time_table.shape[0]:
            time = self.time_table[:n_patches].to(tokens.dtype)
        else:
            time = sincos_time_embedding(n_patches, self.config.embed_dim).to(tokens)
        if self.config.patch_mode == "channel":
            # Channel-major tokens: token j = c*A + a, so the time table tiles over channels.
            tokens = tokens + time.repeat(n_chans, 1)
            if self.channel_embed is not None:
                if channel_position is None:
                    channel_position = torch.arange(n_chans, device=tokens.device)
                channel = self.channel_embed(channel_position).to(tokens.dtype)
                channel = channel.expand(batch, n_chans, -1)
                tokens = tokens + channel.repeat_interleave(n_patches, dim=1)
        else:
            tokens = tokens + time
        tokens = self.pos_drop(tokens)

        attn_mask = None
        if channel_mask is not None and self.config.patch_mode == "channel":
            valid = self.token_validity(channel_mask, n_chans, n_patches, batch)
            attn_mask = valid[:, None, None, :]
        for block in self.blocks:
            tokens = block(tokens, attn_mask=attn_mask)
        return self.norm(tokens)

    def pool(self, hidden: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of ``hidden [B, L, D]`` over real tokens (``valid [B, L]``), then LayerNorm: ``[B, D]``."""
        if valid is None:
            pooled = hidden.mean(dim=1)
        else:
            weight = valid.to(hidden.dtype)[..., None]
            pooled = (hidden * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)
        return self.fc_norm(pooled)

    def forward_features(
        self,
        signal: torch.Tensor,
        channel_mask: torch.Tensor | None = None,
        channel_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled features ``[B, D]`` of ``signal [B, C, T]`` (no masking): the head's input."""
        _check_has_real_channel(channel_mask)
        patches = self.patchify(signal, channel_mask)
        hidden = self.forward_encoder(patches, channel_mask=channel_mask,
                                      channel_position=channel_position)
        batch, n_chans, n_patches, _ = patches.shape
        valid = None
        if channel_mask is not None:
            valid = self.token_validity(channel_mask, n_chans, n_patches, batch)
        return self.pool(hidden, valid)

    def forward(
        self,
        signal: torch.Tensor,
        channel_mask: torch.Tensor | None = None,
        channel_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, n_outputs]`` for ``signal [B, C, T]`` (pooled features if ``n_outputs`` is 0)."""
        return self.head(self.forward_features(signal, channel_mask, channel_position))

    def reset_head(self, n_outputs: int) -> None:
        """Replace the classification head (e.g. a pretrained encoder for a new task)."""
        self.config = replace(self.config, n_outputs=n_outputs)
        head = nn.Linear(self.config.embed_dim, n_outputs) if n_outputs > 0 else nn.Identity()
        head.apply(_init_weights)
        self.head = head.to(self.fc_norm.weight.device)

    # The Backbone interface ------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def n_outputs(self) -> int:
        """The size of the head (0: none)."""
        return self.config.n_outputs

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.config.sfreq, self.config.patch_len, self.config.input_unit)

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.forward_features(batch["signal"], channel_mask=batch.get("channel_mask"))

    def patch_features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        channel_mask = batch.get("channel_mask")
        _check_has_real_channel(channel_mask)
        patches = self.patchify(batch["signal"], channel_mask)
        return self.forward_encoder(patches, channel_mask=channel_mask)

    def classify(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["signal"], channel_mask=batch.get("channel_mask"))

    def with_head(self, n_outputs: int, drop_path: float) -> NeuroBert:
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"drop_path must lie in [0, 1), got {drop_path}")
        rebuilt = NeuroBert.from_config(replace(self.config, n_outputs=n_outputs,
                                                drop_path=drop_path))
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        load_state_strict(rebuilt, state, "the backbone", newly_initialised=("head.",))
        return rebuilt

    def check_input(self, sfreq: float, n_times: int, unit: str, where: str,
                    channels: Sequence[str] | None = None) -> None:
        """Neuro-BERT needs its patch rate and at least one patch; it records the windows' length
        and unit in its config."""
        config = self.config
        if abs(config.sfreq - float(sfreq)) > 1e-6 * config.sfreq:
            raise ConfigError(f"{where}: this Neuro-BERT was built for {config.sfreq:g} Hz, the "
                              f"windows are at {sfreq:g} Hz; its {config.patch_len}-sample patches "
                              "would cover another duration. Resample, or train from scratch")
        if n_times < config.patch_len:
            raise ConfigError(f"{where}: windows of {n_times} samples are shorter than one "
                              f"{config.patch_len}-sample patch")
        self.config = replace(config, n_times=int(n_times), input_unit=unit)

    def saved_config(self) -> dict[str, Any]:
        # Neuro-BERT states its own rate, patch length and input unit.
        return {"architecture": self.config.to_dict(), "sfreq": self.config.sfreq,
                "patch_size": self.config.patch_len, "input_unit": self.config.input_unit}

    @classmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> NeuroBert:
        return cls.from_config(config["architecture"])


def _check_has_real_channel(channel_mask: torch.Tensor | None) -> None:
    # A sample with no real channel would attend to nothing and turn NaN.
    if channel_mask is not None and not bool(channel_mask.any(dim=1).all()):
        raise ConfigError("a batch sample has no real channel (channel_mask all False)")


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


#: Paper scale ([3P] sizes, METHODS §6.4): about 0.8 M encoder parameters.
NEUROBERT_BASE = dict(embed_dim=128, depth=4, num_heads=4, mlp_dim=512, drop=0.1)
#: A tiny configuration for CPU tests and demos.
NEUROBERT_SMALL = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, drop=0.0)


@register_model("neurobert_base")
def neurobert_base(**overrides: Any) -> NeuroBert:
    """Neuro-BERT at the paper's scale: 4 layers, width 128, 4 heads, MLP 512, dropout 0.1."""
    return NeuroBert(**{**NEUROBERT_BASE, **overrides})


@register_model("neurobert_small")
def neurobert_small(**overrides: Any) -> NeuroBert:
    """Tiny Neuro-BERT (2 layers, width 32) for CPU tests and demos."""
    return NeuroBert(**{**NEUROBERT_SMALL, **overrides})
