"""VQ-NSP, LaBraM's neural tokenizer: encoder, normalised EMA codebook, Fourier-spectrum decoder.

METHODS.md §3. The encoder is a LaBraM transformer (q/v bias, no QK-norm, no layer scale) whose
fc_norm is applied to every patch token; ``code_projection`` (Linear → Tanh → Linear, fp32) maps
each token to a 64-d vector z, which is ℓ2-normalised and assigned to its nearest codebook row.
The decoder (3 blocks) reads the selected codes and predicts each patch's z-scored Fourier
amplitude and phase. The codebook is not trained by gradients: each training step moves every used
code towards the normalised mean of the vectors assigned to it (EMA, λ = 0.99).

Distributed training: the per-code counts and sums of the EMA update and every k-means iteration
are all-reduced over the default process group, and the k-means seeds are broadcast from rank 0,
so every rank keeps an identical codebook without relying on DDP's buffer broadcast.

Dead codes: ``usage`` is an EMA of per-code assignment counts. :meth:`NormEMAQuantizer.usage_report`
gives the codebook perplexity and the fraction of codes in use; :meth:`NormEMAQuantizer.restart_dead_codes`
re-seeds codes whose usage fell below a threshold with encoder outputs of the current batch (the
VQ objective calls it every ``restart_every`` steps when asked; the official recipe never does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from neurofm.models.backbone import SavedModel
from neurofm.models.labram import (
    INPUT_UNIT,
    PATCH_SIZE,
    SAMPLING_RATE,
    LabramConfig,
    NeuralTransformer,
    as_patches,
    channel_major_valid,
)
from neurofm.models.registry import check_sizes, register_family, register_model


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _broadcast_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def spherical_kmeans(samples: torch.Tensor, n_clusters: int, n_iters: int = 10,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means over unit vectors ``samples [M, d]`` (this rank's share under DDP).

    Initial centres are drawn from rank 0's samples (with replacement when it has fewer than
    ``n_clusters``) and broadcast; assignments use cosine similarity; each iteration's counts and
    sums are all-reduced, means re-normalised, and empty clusters keep their centre.
    Returns centres ``[n_clusters, d]`` and the last iteration's counts ``[n_clusters]``.
    """
    n_samples, _dim = samples.shape
    if n_samples >= n_clusters:
        picks = torch.randperm(n_samples, generator=generator, device="cpu")[:n_clusters]
    else:
        picks = torch.randint(0, n_samples, (n_clusters,), generator=generator, device="cpu")
    means = _broadcast_from_rank0(samples[picks.to(samples.device)].clone())
    counts = torch.zeros(n_clusters, device=samples.device, dtype=samples.dtype)
    for _ in range(n_iters):
        buckets = (samples @ means.t()).argmax(dim=-1)
        counts = _all_reduce_sum(torch.bincount(buckets, minlength=n_clusters).to(samples.dtype))
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        sums = _all_reduce_sum(sums)
        empty = counts == 0
        new_means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=-1)
        means = torch.where(empty.unsqueeze(1), means, new_means)
    return means, counts


class NormEMAQuantizer(nn.Module):
    """ℓ2-normalised codebook ``[n_codes, dim]`` with EMA updates and optional k-means init.

    ``forward(z [M, dim] unit vectors, valid [M] optional)`` returns the code ids ``[M]``, the
    straight-through quantised vectors ``[M, dim]`` and the commitment loss
    β·MSE(sg(z_q), z) over valid rows. In training mode it first k-means-initialises an empty
    codebook, then applies the EMA update.
    """

    # Buffers (registered in __init__), declared for type checkers.
    codebook: torch.Tensor
    initialized: torch.Tensor
    usage: torch.Tensor

    def __init__(self, n_codes: int = 8192, dim: int = 64, decay: float = 0.99, beta: float = 1.0,
                 kmeans_init: bool = True) -> None:
        super().__init__()
        self.n_codes = n_codes
        self.dim = dim
        self.decay = decay
        self.beta = beta
        codebook = torch.zeros(n_codes, dim) if kmeans_init else F.normalize(torch.randn(n_codes, dim), dim=-1)
        self.register_buffer("codebook", codebook)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("usage", torch.zeros(n_codes))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``z [M, dim]`` (squared Euclidean distance,
        computed as the official code does so ties resolve identically)."""
        distances = (z.square().sum(dim=1, keepdim=True) + self.codebook.square().sum(dim=1)
                     - 2 * z @ self.codebook.t())
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor, valid: torch.Tensor | None = None):
        real = z if valid is None else z[valid]
        if self.training and not bool(self.initialized):
            self.initialize(real.detach())
        ids = self.nearest(z)
        quantized = self.codebook[ids]
        if self.training:
            self._ema_update(real.detach(), ids if valid is None else ids[valid])
        diff = (quantized.detach() - z).square()
        if valid is None:
            loss = self.beta * diff.mean()
        else:
            loss = self.beta * diff[valid].mean()
        quantized = z + (quantized - z).detach()
        return ids, quantized, loss

    @torch.no_grad()
    def initialize(self, z: torch.Tensor) -> None:
        """K-means-initialise the codebook from unit vectors ``z [M, dim]`` (10 iterations)."""
        means, counts = spherical_kmeans(z.float(), self.n_codes)
        self.codebook.copy_(means)
        self.usage.copy_(counts)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        counts = _all_reduce_sum(torch.bincount(ids, minlength=self.n_codes).to(z.dtype))
        sums = _all_reduce_sum(torch.zeros_like(self.codebook).index_add_(0, ids, z.to(self.codebook.dtype)))
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        used = counts > 0
        targets = F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=-1)
        moved = F.normalize(self.decay * self.codebook + (1 - self.decay) * targets, dim=-1)
        self.codebook.copy_(torch.where(used.unsqueeze(1), moved, self.codebook))

    @torch.no_grad()
    def usage_report(self, dead_below: float = 1e-3) -> dict[str, float]:
        """Codebook health from the usage EMA: ``perplexity`` (exp of the entropy of the usage
        distribution; at most ``n_codes``), ``used_fraction`` and ``dead_codes`` (usage below
        ``dead_below`` assignments per step)."""
        total = self.usage.sum()
        if float(total) <= 0:
            return {"perplexity": 0.0, "used_fraction": 0.0, "dead_codes": float(self.n_codes)}
        probs = self.usage / total
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum()
        dead = self.usage < dead_below
        return {"perplexity": float(entropy.exp()), "used_fraction": float((~dead).float().mean()),
                "dead_codes": float(dead.sum())}

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, dead_below: float = 1e-3,
                           generator: torch.Generator | None = None) -> int:
        """Re-seed every code whose usage EMA is below ``dead_below`` with a random row of this
        batch's unit vectors ``z [M, dim]`` (chosen on rank 0 and broadcast, so ranks agree), and
        give it the mean usage of the live codes so it is not restarted again at once.
        Returns how many codes were restarted."""
        dead = self.usage < dead_below
        n_dead = int(dead.sum())
        if n_dead == 0 or z.shape[0] == 0:
            return 0
        picks = torch.randint(0, z.shape[0], (n_dead,), generator=generator, device="cpu")
        seeds = _broadcast_from_rank0(z[picks.to(z.device)].to(self.codebook.dtype).contiguous())
        self.codebook[dead] = F.normalize(seeds, dim=-1)
        live = self.usage[~dead]
        self.usage[dead] = live.mean() if live.numel() else 1.0
        return n_dead


class CodeEmbedding(nn.Module):
    """The decoder's patch embedding: a 1×1 convolution from code space to D, per token.

    Input ``[B, L, code_dim]``; output ``[B, L, D]``. Kept as ``Conv2d`` so the official weight
    ``patch_embed.proj.weight [D, code_dim, 1, 1]`` loads unchanged.
    """

    def __init__(self, code_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(code_dim, dim, kernel_size=1)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(codes, self.proj.weight.flatten(1), self.proj.bias)


def _regression_head(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, out_dim))


def fourier_targets(patches: torch.Tensor, token_valid: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-scored Fourier amplitude and phase of every patch: two ``[B, N·A, 200]`` tensors.

    ``patches [B, N, A, 200]`` in 100 µV. X = the full 200-bin DFT of each patch (no window);
    amplitude |X| and phase ∠X are each standardised per sample with the mean and unbiased std
    over all of its real (channel, patch, bin) entries (``token_valid [B, N·A]`` excludes padding).
    """
    batch, n_chans, n_patches, size = patches.shape
    spectrum = torch.fft.fft(patches.float().reshape(batch, n_chans * n_patches, size), dim=-1)
    return _standardise(spectrum.abs(), token_valid), _standardise(spectrum.angle(), token_valid)


def _standardise(values: torch.Tensor, token_valid: torch.Tensor | None) -> torch.Tensor:
    if token_valid is None:
        mean = values.mean(dim=(1, 2), keepdim=True)
        std = values.std(dim=(1, 2), keepdim=True)
        return (values - mean) / std
    weight = token_valid.unsqueeze(-1).to(values.dtype)
    count = weight.sum(dim=(1, 2), keepdim=True) * values.shape[-1]
    mean = (values * weight).sum(dim=(1, 2), keepdim=True) / count
    var = ((values - mean).square() * weight).sum(dim=(1, 2), keepdim=True) / (count - 1).clamp(min=1)
    return (values - mean) / var.sqrt()


@dataclass(frozen=True)
class VQNSPConfig:
    """Tokenizer architecture: encoder geometry, decoder depth, codebook size and EMA decay."""

    encoder: LabramConfig = field(default_factory=lambda: LabramConfig(
        qkv_bias=True, qk_norm=False, init_values=0.0, use_mean_pooling=True))
    decoder_depth: int = 3
    code_dim: int = 64
    n_codes: int = 8192
    decay: float = 0.99
    beta: float = 1.0
    kmeans_init: bool = True

    def __post_init__(self) -> None:
        check_sizes(self, ("decoder_depth", "code_dim", "n_codes"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary (the encoder config nested)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VQNSPConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["encoder"] = LabramConfig(**values["encoder"])
        return cls(**values)


@dataclass
class VQNSPOutput:
    """Everything one tokenizer pass computes (token order channel-major, L = N·A).

    ``token_ids [B, L]`` (−1 at padding), ``features [B, L, D]`` encoder patch tokens,
    ``projected [B, L, code_dim]`` before normalisation, ``quantized [B, L, code_dim]``
    (straight-through), ``quant_loss`` scalar, ``amplitude``/``phase [B, L, 200]`` decoder outputs
    (None from :meth:`VQNSP.encode`), ``token_valid [B, L]`` or None.
    """

    token_ids: torch.Tensor
    features: torch.Tensor
    projected: torch.Tensor
    z: torch.Tensor
    quantized: torch.Tensor
    quant_loss: torch.Tensor
    n_patches: int
    token_valid: torch.Tensor | None
    amplitude: torch.Tensor | None = None
    phase: torch.Tensor | None = None


@register_family
class VQNSP(nn.Module, SavedModel):
    """The VQ-NSP tokenizer (encoder, codebook, decoder with amplitude and phase heads).

    Inputs: ``x [B, N, T]`` or ``[B, N, A, 200]`` in 100 µV at 200 Hz, ``channel_index [B, N]``
    vocabulary indices, optional ``channel_mask [B, N]`` (True = real channel).
    """

    family = "vqnsp"

    def __init__(self, config: VQNSPConfig = VQNSPConfig()) -> None:
        super().__init__()
        self.config = config
        dim = config.encoder.embed_dim
        self.encoder = NeuralTransformer(replace(config.encoder, use_mean_pooling=True))
        self.code_projection = _regression_head(dim, config.code_dim)
        self.quantizer = NormEMAQuantizer(config.n_codes, config.code_dim, config.decay, config.beta,
                                          config.kmeans_init)
        decoder_config = replace(config.encoder, depth=config.decoder_depth, use_mean_pooling=True)
        self.decoder = NeuralTransformer(decoder_config, patch_embed=CodeEmbedding(config.code_dim, dim))
        self.amplitude_head = _regression_head(dim, PATCH_SIZE)
        self.phase_head = _regression_head(dim, PATCH_SIZE)
        for head in (self.code_projection, self.amplitude_head, self.phase_head):
            for layer in head:
                if isinstance(layer, nn.Linear):
                    nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)
                    nn.init.zeros_(layer.bias)

    def encode(self, x: torch.Tensor, channel_index: torch.Tensor,
               channel_mask: torch.Tensor | None = None) -> VQNSPOutput:
        """Encoder, projection and quantiser (updates the codebook in training mode)."""
        patches = as_patches(x)
        batch, n_chans, n_patches, _ = patches.shape
        token_valid = None
        if channel_mask is not None and not bool(channel_mask.all()):
            token_valid = channel_major_valid(channel_mask.to(torch.bool), n_patches)
        tokens = patches.reshape(batch, n_chans * n_patches, PATCH_SIZE)
        hidden = self.encoder.encode(tokens, channel_index, n_patches, token_valid)
        features = self.encoder.normed_tokens(hidden)[:, 1:]
        # Code assignment in fp32 even under autocast: a bf16 distance would flip near-ties.
        with torch.autocast(device_type=x.device.type, enabled=False):
            projected = self.code_projection(features.float())
            z = F.normalize(projected, dim=-1)
            flat_valid = None if token_valid is None else token_valid.reshape(-1)
            ids, quantized, quant_loss = self.quantizer(z.reshape(-1, self.config.code_dim), flat_valid)
        ids = ids.reshape(batch, -1)
        if token_valid is not None:
            ids = ids.masked_fill(~token_valid, -1)
        return VQNSPOutput(ids, features, projected, z, quantized.reshape(z.shape), quant_loss,
                           n_patches, token_valid)

    def decode(self, quantized: torch.Tensor, channel_index: torch.Tensor, n_patches: int,
               token_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Amplitude and phase predictions ``[B, L, 200]`` from codes ``[B, L, code_dim]``."""
        hidden = self.decoder.encode(quantized, channel_index, n_patches, token_valid)
        features = self.decoder.normed_tokens(hidden)[:, 1:]
        return self.amplitude_head(features), self.phase_head(features)

    def forward(self, x: torch.Tensor, channel_index: torch.Tensor,
                channel_mask: torch.Tensor | None = None) -> VQNSPOutput:
        """Encode, quantise and decode; see :class:`VQNSPOutput`."""
        out = self.encode(x, channel_index, channel_mask)
        out.amplitude, out.phase = self.decode(out.quantized, channel_index, out.n_patches,
                                               out.token_valid)
        return out

    @torch.no_grad()
    def get_codebook_indices(self, x: torch.Tensor, channel_index: torch.Tensor,
                             channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids ``[B, N·A]`` (−1 at padding). Call in eval mode: training mode would update
        the codebook."""
        return self.encode(x, channel_index, channel_mask).token_ids


    def saved_config(self) -> dict[str, Any]:
        return {"architecture": self.config.to_dict(), "sfreq": SAMPLING_RATE,
                "patch_size": PATCH_SIZE, "input_unit": INPUT_UNIT}

    @classmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> VQNSP:
        return cls(VQNSPConfig.from_dict(config["architecture"]))


def build_vqnsp(encoder: LabramConfig, **overrides: Any) -> VQNSP:
    """A tokenizer with the given encoder geometry; ``overrides`` are :class:`VQNSPConfig` fields."""
    return VQNSP(VQNSPConfig(encoder=encoder, **overrides))


@register_model("vqnsp_base")
def vqnsp_base(**overrides: Any) -> VQNSP:
    """The official VQ-NSP tokenizer geometry: Base encoder, 3-block decoder, 8192 × 64 codes."""
    return build_vqnsp(VQNSPConfig().encoder, **overrides)


@register_model("vqnsp_small")
def vqnsp_small(**overrides: Any) -> VQNSP:
    """A small tokenizer (2-block encoder, D=100, 1-block decoder, 512 codes) for tests and demos."""
    encoder = LabramConfig(embed_dim=100, conv_channels=4, depth=2, num_heads=4, mlp_dim=400,
                           qkv_bias=True, qk_norm=False, init_values=0.0)
    overrides = {"decoder_depth": 1, "n_codes": 512, **overrides}
    return build_vqnsp(encoder, **overrides)
