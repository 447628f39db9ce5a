"""LaBraM's neural transformer: temporal encoder, spatial/time embeddings, blocks, heads.

Data flow (METHODS.md §2): a window ``[B, N, T]`` in units of 100 µV at 200 Hz is cut into
A = T / 200 one-second patches per channel; tokens are flattened channel-major (token j = n·A + a).
The temporal encoder turns each 200-sample patch into a D-dimensional embedding; the spatial row of
the token's channel (``pos_embed[vocabulary index + 1]``) and the time row of its patch
(``time_embed[a]``) are added; a cls token is prepended; pre-LN blocks follow. The fine-tuning
feature is ``fc_norm(mean over patch tokens)``.

Padding: windows with different channel sets share a batch through ``channel_mask [B, N]``
(True = real channel). Padded tokens are excluded from the attention keys, from the mean pooling
and from the temporal encoder's GroupNorm statistics, so they change nothing in the outputs of real
tokens. The official code pools GroupNorm statistics over every patch of a sample; with no padding
neurofm computes exactly that.

:class:`NeuralTransformer` works on tokens (it is also the VQ-NSP encoder and decoder and the
masked-modelling student); :class:`Labram` wraps it with the braindecode-style interface
(``n_chans``, ``n_outputs``, ``n_times``, ``sfreq``, ``chs_info``/``ch_names``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.channels import LABRAM_VOCABULARY, vocabulary_indices
from neurofm.errors import ConfigError
from neurofm.models.backbone import Backbone, InputSpec, load_state_strict
from neurofm.models.blocks import Block
from neurofm.models.registry import check_sizes, register_family, register_model

_log = logging.getLogger(__name__)

#: Samples per patch (1 s at 200 Hz) and the sampling rate every LaBraM network expects.
PATCH_SIZE = 200
SAMPLING_RATE = 200.0
#: Rows of the learnable time table: at most 16 patches (16 s) per channel.
MAX_PATCHES = 16
#: Rows of the spatial table: row 0 for cls, then one row per vocabulary name.
SPATIAL_ROWS = len(LABRAM_VOCABULARY) + 1
#: The unit the networks expect their input in.
INPUT_UNIT = "100uV"


@dataclass(frozen=True)
class LabramConfig:
    """Architecture of one LaBraM transformer (METHODS.md §2 table).

    ``conv_channels`` is the temporal encoder's C (D = 25·C for 200-sample patches);
    ``init_values`` is the layer-scale init (0 disables layer scale); ``use_mean_pooling`` selects
    the fine-tuning layout (Identity final norm + fc_norm) over a final LayerNorm.
    """

    embed_dim: int = 200
    conv_channels: int = 8
    depth: int = 12
    num_heads: int = 10
    mlp_dim: int = 800
    qkv_bias: bool = False
    qk_norm: bool = True
    init_values: float = 0.1
    drop_path: float = 0.0
    use_mean_pooling: bool = True

    def __post_init__(self) -> None:
        check_sizes(self, ("embed_dim", "conv_channels", "depth", "num_heads", "mlp_dim"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary of the fields."""
        return asdict(self)


LABRAM_CONFIGS: dict[str, LabramConfig] = {
    "base": LabramConfig(),
    "large": LabramConfig(embed_dim=400, conv_channels=16, depth=24, num_heads=16, mlp_dim=1600,
                          init_values=1e-5),
    "huge": LabramConfig(embed_dim=800, conv_channels=32, depth=48, num_heads=16, mlp_dim=3200,
                         init_values=1e-6),
    # For tests and CPU demos: same computation, a fraction of the cost.
    "small": LabramConfig(embed_dim=100, conv_channels=4, depth=2, num_heads=4, mlp_dim=400),
}


def _masked_group_norm(x: torch.Tensor, norm: nn.GroupNorm, valid: torch.Tensor) -> torch.Tensor:
    """GroupNorm of ``x [B, C, L, T]`` with statistics over the valid rows ``valid [B, L]`` only."""
    batch, channels, rows, time = x.shape
    groups = norm.num_groups
    # Statistics in fp32 even under autocast, as autocast runs F.group_norm.
    grouped = x.float().reshape(batch, groups, channels // groups, rows, time)
    weight = valid.reshape(batch, 1, 1, rows, 1).to(grouped.dtype)
    count = valid.sum(dim=1).to(grouped.dtype).clamp(min=1) * (channels // groups) * time
    count = count.reshape(batch, 1, 1, 1, 1)
    mean = (grouped * weight).sum(dim=(2, 3, 4), keepdim=True) / count
    centred = grouped - mean
    var = (centred.square() * weight).sum(dim=(2, 3, 4), keepdim=True) / count
    normed = (centred * torch.rsqrt(var + norm.eps)).reshape(batch, channels, rows, time)
    return normed * norm.weight.reshape(1, -1, 1, 1) + norm.bias.reshape(1, -1, 1, 1)


class TemporalEncoder(nn.Module):
    """Three conv → GroupNorm → GELU blocks turning each 200-sample patch into a D-vector.

    Input ``[B, L, 200]`` patches (100 µV), optional ``valid [B, L]``; output ``[B, L, 25·C]``,
    time-major (feature index = t·C + c), as the official ``TemporalConv``.
    """

    def __init__(self, out_channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, out_channels, kernel_size=(1, 15), stride=(1, 8), padding=(0, 7))
        self.norm1 = nn.GroupNorm(4, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
        self.norm2 = nn.GroupNorm(4, out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(4, out_channels)

    def forward(self, patches: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        # Every patch is one row of a single image, so GroupNorm pools over all rows of a sample.
        x = patches.unsqueeze(1)
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2),
                           (self.conv3, self.norm3)):
            x = conv(x)
            x = norm(x) if valid is None else _masked_group_norm(x, norm, valid)
            x = F.gelu(x)
        batch, channels, rows, time = x.shape
        return x.permute(0, 2, 3, 1).reshape(batch, rows, time * channels)


class NeuralTransformer(nn.Module):
    """The LaBraM transformer over tokens, with the official parameter names.

    ``patch_embed`` maps token inputs ``[B, L, F]`` (and ``valid [B, L]``) to ``[B, L, D]``; by
    default the :class:`TemporalEncoder`. ``n_outputs > 0`` adds a linear ``head``.
    ``cls_spatial_row`` is ``"cls"`` (fine-tuning network: row 0) or ``"first_channel"`` (the
    official masked-modelling network's quirk: the first channel's spatial row).
    """

    def __init__(
        self,
        config: LabramConfig = LabramConfig(),
        n_outputs: int = 0,
        patch_embed: nn.Module | None = None,
        cls_spatial_row: Literal["cls", "first_channel"] = "cls",
    ) -> None:
        super().__init__()
        self.config = config
        self.cls_spatial_row = cls_spatial_row
        dim = config.embed_dim
        self.patch_embed = patch_embed if patch_embed is not None else TemporalEncoder(
            config.conv_channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, SPATIAL_ROWS, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, MAX_PATCHES, dim))
        depth = config.depth
        rates = [config.drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_dim, qkv_bias=config.qkv_bias,
                  qk_norm=config.qk_norm, init_values=config.init_values, drop_path=rate)
            for rate in rates
        )
        if config.use_mean_pooling:
            self.norm: nn.Module = nn.Identity()
            self.fc_norm: nn.LayerNorm | None = nn.LayerNorm(dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.fc_norm = None
        self.head: nn.Linear | None = nn.Linear(dim, n_outputs) if n_outputs > 0 else None
        self.init_weights()

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def init_weights(self, truncation: float = 2.0, head_scale: float = 1e-3) -> None:
        """The official initialisation (METHODS.md §2).

        Linear/conv weights and the cls/pos/time tables: truncated normal, std 0.02, cut at
        ``±truncation`` (absolute; the fine-tuning code uses 2, the pretraining code 0.02).
        ``attn.proj`` and ``mlp.fc2`` of block l (1-based) are divided by √(2l); the head is scaled
        by ``head_scale``.
        """
        for table in (self.cls_token, self.pos_embed, self.time_embed):
            nn.init.trunc_normal_(table, std=0.02, a=-truncation, b=truncation)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-truncation, b=truncation)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for layer, block in enumerate(cast("Iterable[Block]", self.blocks), start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
            if self.head is not None:
                self.head.weight.mul_(head_scale)
                self.head.bias.mul_(head_scale)

    def embed(
        self,
        tokens: torch.Tensor,
        channel_index: torch.Tensor,
        n_patches: int,
        token_valid: torch.Tensor | None = None,
        masked: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
        patch_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with cls prepended: ``[B, 1 + N·A, D]``.

        Args:
            tokens: patch-embedding input ``[B, N·A, F]``, channel-major.
            channel_index: vocabulary indices ``[B, N]`` (0..127).
            n_patches: A, patches per channel (1..16).
            token_valid: optional bool ``[B, N·A]``, False for padding tokens.
            masked: optional bool ``[B, N·A]``; masked tokens are replaced by ``mask_token``
                before the spatial and time embeddings are added.
            patch_embeddings: precomputed ``patch_embed`` output ``[B, N·A, D]`` (lets two passes
                over the same signal share the temporal encoder).
        """
        if not 1 <= n_patches <= MAX_PATCHES:
            raise ValueError(
                f"LaBraM takes 1 to {MAX_PATCHES} one-second patches per channel, got {n_patches}; "
                f"cut the input into windows of at most {MAX_PATCHES} s")
        x = patch_embeddings if patch_embeddings is not None else self.patch_embed(tokens, token_valid)
        batch, length, dim = x.shape
        if masked is not None:
            assert mask_token is not None, "masked tokens need a mask_token"
            x = torch.where(masked.unsqueeze(-1), mask_token.to(x.dtype).expand(batch, length, dim), x)
        spatial = self.pos_embed[0, channel_index + 1]  # [B, N, D]
        if self.cls_spatial_row == "cls":
            cls_spatial = self.pos_embed[:, 0].expand(batch, dim)
        else:
            cls_spatial = spatial[:, 0]
        spatial = spatial.repeat_interleave(n_patches, dim=1)  # channel-major: row n repeated A times
        time = self.time_embed[0, :n_patches].repeat(channel_index.shape[1], 1)  # [N·A, D]
        cls = self.cls_token.expand(batch, 1, dim) + cls_spatial.unsqueeze(1)
        # Same order of additions as the official code (embedding + spatial, then + time).
        return torch.cat((cls, (x + spatial) + time), dim=1)

    def encode(
        self,
        tokens: torch.Tensor,
        channel_index: torch.Tensor,
        n_patches: int,
        token_valid: torch.Tensor | None = None,
        masked: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
        patch_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings through every block, before the final norms: ``[B, 1 + N·A, D]``."""
        x = self.embed(tokens, channel_index, n_patches, token_valid, masked, mask_token,
                       patch_embeddings)
        attn_mask = None
        if token_valid is not None and not bool(token_valid.all()):
            keys = torch.cat((token_valid.new_ones(token_valid.shape[0], 1), token_valid), dim=1)
            attn_mask = keys[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return x

    def pool(self, hidden: torch.Tensor, token_valid: torch.Tensor | None = None) -> torch.Tensor:
        """The fine-tuning feature ``[B, D]`` from ``encode``'s output.

        Mean pooling: fc_norm(mean over real patch tokens); otherwise the normed cls token.
        """
        if self.fc_norm is None:
            return self.norm(hidden)[:, 0]
        patches = hidden[:, 1:]
        if token_valid is None:
            return self.fc_norm(patches.mean(dim=1))
        weight = token_valid.unsqueeze(-1).to(patches.dtype)
        mean = (patches * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1)
        return self.fc_norm(mean)

    def normed_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every token after the final norm (fc_norm in mean-pooling mode): ``[B, 1 + L, D]``."""
        return self.fc_norm(hidden) if self.fc_norm is not None else self.norm(hidden)


def channel_major_valid(channel_mask: torch.Tensor, n_patches: int) -> torch.Tensor:
    """Token validity ``[B, N·A]`` from channel validity ``[B, N]`` (channel-major order)."""
    return channel_mask.repeat_interleave(n_patches, dim=1)


def as_patches(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, T]`` (T a multiple of 200) or ``[B, N, A, 200]`` → ``[B, N, A, 200]``."""
    if x.ndim == 4:
        if x.shape[-1] != PATCH_SIZE:
            raise ValueError(f"a [B, N, A, P] input needs P = {PATCH_SIZE} samples, got {x.shape[-1]}")
        return x
    if x.ndim != 3:
        raise ValueError(f"expected input [B, C, T] or [B, C, A, {PATCH_SIZE}], got shape "
                         f"{tuple(x.shape)}")
    if x.shape[-1] % PATCH_SIZE:
        raise ValueError(
            f"input length {x.shape[-1]} samples is not a whole number of {PATCH_SIZE}-sample "
            f"(1 s at {SAMPLING_RATE:g} Hz) patches; crop or pad windows to whole seconds")
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] // PATCH_SIZE, PATCH_SIZE)


def resolve_channel_index(
    batch: int,
    n_chans: int,
    channel_index: torch.Tensor | Sequence[int] | None,
    ch_names: Sequence[str] | None,
    device: torch.device,
) -> torch.Tensor:
    """Vocabulary indices ``[B, C]`` from explicit indices (``[C]`` or ``[B, C]``) or names."""
    if channel_index is None:
        if ch_names is None:
            raise ValueError(
                "the model needs to know which electrode each input channel is: pass ch_names= "
                "(or chs_info=) to the constructor or the call, or channel_index= (vocabulary indices)")
        channel_index = vocabulary_indices(ch_names)
    index = torch.as_tensor(channel_index, dtype=torch.long, device=device)
    if index.ndim == 1:
        index = index.unsqueeze(0).expand(batch, -1)
    if index.shape != (batch, n_chans):
        raise ValueError(f"channel_index has shape {tuple(index.shape)}, expected ({batch}, {n_chans}) "
                         f"or ({n_chans},) for {n_chans} input channels")
    if bool((index < 0).any()) or bool((index >= len(LABRAM_VOCABULARY)).any()):
        raise ValueError(f"channel_index values must be vocabulary indices 0..{len(LABRAM_VOCABULARY) - 1}")
    return index


@register_family
class Labram(NeuralTransformer, Backbone):
    """LaBraM backbone with the fine-tuning head, braindecode-style.

    Args:
        n_outputs: size of the linear head (0: no head, ``forward`` returns features ``[B, D]``).
        n_chans, n_times: expected input shape (optional; checked when given).
        sfreq: sampling rate of the input; must be 200 Hz (resample in preprocessing).
        ch_names / chs_info: default channel labels (MNE ``info["chs"]`` entries for chs_info),
            mapped onto the LaBraM vocabulary; ``forward`` may override them per call.
        config: the architecture (see :data:`LABRAM_CONFIGS`).
        return_features: make ``forward`` return pooled features instead of head outputs.

    ``forward(x, ch_names=None, channel_index=None, channel_mask=None)`` takes ``x [B, C, T]``
    (T a multiple of 200, 1..16 s) or ``[B, C, A, 200]`` in units of 100 µV. As a
    :class:`~neurofm.models.backbone.Backbone` it takes the batch dictionary, whose
    ``channel_index`` places each channel in the vocabulary.
    """

    family = "labram"
    uses_channel_vocabulary = True
    #: METHODS.md §5: stochastic depth 0.1 (Huge 0.2, set per size).
    finetune_recipe: ClassVar[dict[str, Any]] = {"drop_path": 0.1}

    def __init__(
        self,
        n_outputs: int = 0,
        n_chans: int | None = None,
        n_times: int | None = None,
        sfreq: float = SAMPLING_RATE,
        ch_names: Sequence[str] | None = None,
        chs_info: Sequence[dict[str, Any]] | None = None,
        config: LabramConfig = LabramConfig(),
        return_features: bool = False,
    ) -> None:
        if float(sfreq) != SAMPLING_RATE:
            raise ValueError(f"LaBraM takes {SAMPLING_RATE:g} Hz input, got sfreq={sfreq}; resample "
                             "the recordings first (neurofm preprocessing does)")
        if ch_names is None and chs_info is not None:
            ch_names = [ch["ch_name"] for ch in chs_info]
        if ch_names is not None:
            vocabulary_indices(ch_names)  # fail early, naming the unknown channel
            if n_chans is not None and n_chans != len(ch_names):
                raise ValueError(f"n_chans={n_chans} but {len(ch_names)} channel names were given")
            n_chans = len(ch_names)
        if n_times is not None and (n_times % PATCH_SIZE or not 1 <= n_times // PATCH_SIZE <= MAX_PATCHES):
            raise ValueError(f"n_times must be a multiple of {PATCH_SIZE} between {PATCH_SIZE} and "
                             f"{PATCH_SIZE * MAX_PATCHES}, got {n_times}")
        super().__init__(config, n_outputs=n_outputs)
        self.n_chans = n_chans
        self.n_times = n_times
        self.sfreq = float(sfreq)
        self.ch_names = list(ch_names) if ch_names is not None else None
        self.return_features = return_features

    @classmethod
    def from_pretrained(cls, source: str | Any, n_outputs: int | None = None,
                        ch_names: Sequence[str] | None = None) -> Labram:
        """A backbone from an official ``.pth`` (``labram-base.pth`` or a fine-tuned file) or a
        neurofm checkpoint folder (a backbone, or a masked-modelling network whose student becomes
        the backbone); ``n_outputs`` replaces a head of another size, ``ch_names`` sets the default
        channel names. A thin wrapper of :func:`neurofm.from_pretrained` (``backbone=True``)."""
        from neurofm.errors import CheckpointError
        from neurofm.loading import from_pretrained

        model = from_pretrained(source, backbone=True, n_outputs=n_outputs)
        if not isinstance(model, cls):
            raise CheckpointError(f"{source} holds a {type(model).__name__}, not a LaBraM backbone")
        if ch_names is not None:
            vocabulary_indices(ch_names)
            model.ch_names, model.n_chans = list(ch_names), len(ch_names)
        return model

    @classmethod
    def from_braindecode_state_dict(cls, state: Mapping[str, torch.Tensor],
                                    config: LabramConfig | None = None, num_heads: int | None = None,
                                    ch_names: Sequence[str] | None = None) -> Labram:
        """A backbone from a ``braindecode.models.Labram`` state dict (braindecode's key names; the
        architecture is read from its shapes unless ``config`` is given). See
        :mod:`neurofm.models.braindecode_interop` and docs/braindecode.md."""
        from neurofm.models.braindecode_interop import labram_from_braindecode_state_dict

        return labram_from_braindecode_state_dict(state, config, num_heads, ch_names)

    def to_braindecode_state_dict(self, n_times: int) -> dict[str, torch.Tensor]:
        """These weights under ``braindecode.models.Labram``'s names, for one of ``n_times`` samples."""
        from neurofm.models.braindecode_interop import to_braindecode_state_dict

        return to_braindecode_state_dict(self, n_times)

    def reset_head(self, n_outputs: int) -> None:
        """Replace the head by a freshly initialised ``Linear(D, n_outputs)`` (0 removes it)."""
        if n_outputs <= 0:
            self.head = None
            return
        head = nn.Linear(self.embed_dim, n_outputs).to(self.cls_token.device)
        nn.init.trunc_normal_(head.weight, std=0.02, a=-2.0, b=2.0)
        nn.init.zeros_(head.bias)
        with torch.no_grad():
            head.weight.mul_(1e-3)
        self.head = head

    def _prepare(self, x: torch.Tensor, ch_names: Sequence[str] | None,
                 channel_index: torch.Tensor | Sequence[int] | None,
                 channel_mask: torch.Tensor | None):
        patches = as_patches(x)
        batch, n_chans, n_patches, _ = patches.shape
        if self.n_chans is not None and channel_index is None and ch_names is None and n_chans != self.n_chans:
            raise ValueError(f"the model was built for {self.n_chans} channels, the input has {n_chans}")
        index = resolve_channel_index(batch, n_chans, channel_index,
                                      ch_names if ch_names is not None else self.ch_names, x.device)
        token_valid = None
        if channel_mask is not None:
            channel_mask = channel_mask.to(device=x.device, dtype=torch.bool)
            if not bool(channel_mask.all()):
                token_valid = channel_major_valid(channel_mask, n_patches)
        tokens = patches.reshape(batch, n_chans * n_patches, PATCH_SIZE)
        return tokens, index, n_patches, token_valid

    def forward_features(
        self,
        x: torch.Tensor,
        ch_names: Sequence[str] | None = None,
        channel_index: torch.Tensor | Sequence[int] | None = None,
        channel_mask: torch.Tensor | None = None,
        return_all_tokens: bool = False,
        return_patch_tokens: bool = False,
    ) -> torch.Tensor:
        """Pooled features ``[B, D]``; or every normed token ``[B, 1 + C·A, D]`` (cls first) with
        ``return_all_tokens``; or the normed patch tokens ``[B, C·A, D]`` with
        ``return_patch_tokens``."""
        tokens, index, n_patches, token_valid = self._prepare(x, ch_names, channel_index, channel_mask)
        hidden = self.encode(tokens, index, n_patches, token_valid)
        if return_all_tokens:
            return self.normed_tokens(hidden)
        if return_patch_tokens:
            return self.normed_tokens(hidden)[:, 1:]
        return self.pool(hidden, token_valid)

    def forward(
        self,
        x: torch.Tensor,
        ch_names: Sequence[str] | None = None,
        channel_index: torch.Tensor | Sequence[int] | None = None,
        channel_mask: torch.Tensor | None = None,
        return_features: bool | None = None,
    ) -> torch.Tensor:
        """Head outputs ``[B, n_outputs]`` (or features ``[B, D]`` when asked or headless)."""
        features = self.forward_features(x, ch_names, channel_index, channel_mask)
        wants_features = self.return_features if return_features is None else return_features
        if wants_features or self.head is None:
            return features
        return self.head(features)

    # The Backbone interface ------------------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        """The size of the head (0: none)."""
        return self.head.out_features if self.head is not None else 0

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(SAMPLING_RATE, PATCH_SIZE, INPUT_UNIT)

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.forward_features(batch["signal"], channel_index=batch["channel_index"],
                                     channel_mask=batch.get("channel_mask"))

    def patch_features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.forward_features(batch["signal"], channel_index=batch["channel_index"],
                                     channel_mask=batch.get("channel_mask"),
                                     return_patch_tokens=True)

    def classify(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["signal"], channel_index=batch["channel_index"],
                    channel_mask=batch.get("channel_mask"), return_features=False)

    def with_head(self, n_outputs: int, drop_path: float) -> Labram:
        """A copy with a new head (std 0.02 scaled by 0.001, as the official code) and drop path
        ``drop_path`` (fixed at construction, linearly spaced over depth)."""
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"drop_path must lie in [0, 1), got {drop_path}")
        rebuilt = Labram(n_outputs=n_outputs, ch_names=self.ch_names,
                         config=replace(self.config, drop_path=drop_path))
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        load_state_strict(rebuilt, state, "the backbone", newly_initialised=("head.",))
        return rebuilt

    def check_input(self, sfreq: float, n_times: int, unit: str, where: str,
                    channels: Sequence[str] | None = None) -> None:
        """LaBraM needs 200 Hz, 1 to 16 whole seconds and channels named in its vocabulary (the
        :class:`~neurofm.errors.ChannelError` names the first that is not); a unit other than
        100 µV is only warned about."""
        if channels is not None:
            vocabulary_indices(channels)  # LaBraM's spatial rows need real electrode names
        if float(sfreq) != SAMPLING_RATE:
            raise ConfigError(f"{where}: LaBraM takes {SAMPLING_RATE:g} Hz input, the windows "
                              f"are at {sfreq:g} Hz; prepare the corpus with the LaBraM recipe")
        if n_times % PATCH_SIZE or not 1 <= n_times // PATCH_SIZE <= MAX_PATCHES:
            raise ConfigError(f"{where}: LaBraM takes windows of 1 to {MAX_PATCHES} whole seconds, "
                              f"got {n_times} samples ({n_times / sfreq:g} s)")
        if unit != INPUT_UNIT:
            _log.warning("%s: LaBraM was trained on EEG in 100 uV, these windows are in %s",
                         where, unit)

    def saved_config(self) -> dict[str, Any]:
        return {"architecture": self.config.to_dict(), "sfreq": SAMPLING_RATE,
                "patch_size": PATCH_SIZE, "input_unit": INPUT_UNIT, "n_outputs": self.n_outputs,
                "ch_names": self.ch_names}

    @classmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> Labram:
        return cls(n_outputs=config.get("n_outputs", 0), ch_names=config.get("ch_names"),
                   config=LabramConfig(**config["architecture"]))


def build_labram(size: str, **overrides: Any) -> Labram:
    """A :class:`Labram` of a named size; ``overrides`` are config fields or constructor args."""
    config_fields = set(LabramConfig.__dataclass_fields__)
    config = replace(LABRAM_CONFIGS[size], **{k: v for k, v in overrides.items() if k in config_fields})
    return Labram(config=config, **{k: v for k, v in overrides.items() if k not in config_fields})


@register_model("labram_base")
def labram_base(**overrides: Any) -> Labram:
    """LaBraM-Base backbone (5.8M parameters without head)."""
    return build_labram("base", **overrides)


@register_model("labram_large")
def labram_large(**overrides: Any) -> Labram:
    """LaBraM-Large backbone (46M parameters without head)."""
    return build_labram("large", **overrides)


@register_model("labram_huge")
def labram_huge(**overrides: Any) -> Labram:
    """LaBraM-Huge backbone (369M parameters without head)."""
    return build_labram("huge", **overrides)


@register_model("labram_small")
def labram_small(**overrides: Any) -> Labram:
    """A small LaBraM (2 blocks, D=100) for tests and CPU demos."""
    return build_labram("small", **overrides)
