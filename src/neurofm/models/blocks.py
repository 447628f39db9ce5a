"""The one transformer block every neurofm network is built from.

Pre-LN (BEiT-v2 style, as LaBraM's official code): ``u = h + DP(g1 * Attn(LN1 h))``,
``h' = u + DP(g2 * MLP(LN2 u))``. Options cover both LaBraM variants and Neuro-BERT: QK-norm
(LayerNorm over the head dimension, shared across heads), a q/v bias without a k bias, layer
scale, drop path. Parameter names follow the official checkpoints (``attn.qkv``, ``attn.q_bias``,
``attn.q_norm``, ``gamma_1``...), so official weights map onto these modules key for key.
Attention is one call to ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


#: Below this head size a CPU runs attention faster in fp32 than in bf16 or fp16.
CPU_REDUCED_PRECISION_MIN_HEAD_DIM = 64


def attention_dtype(q: torch.Tensor, head_dim: int) -> torch.dtype:
    """The dtype attention runs in: autocast's when it is on (else the queries' own), except on
    a CPU for reduced precision with heads smaller than :data:`CPU_REDUCED_PRECISION_MIN_HEAD_DIM`,
    where fp32 is used.

    Measured with torch 2.13 on one core of an AMX CPU (issue 19): the CPU flash kernel's
    backward for LaBraM-Base's 10 heads of 20 over 191 tokens took 144 ms per call in bf16
    against 40 ms in fp32, the forward about the same in both; at head size 64 bf16 was faster.
    """
    device = q.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q.dtype
    reduced = dtype in (torch.bfloat16, torch.float16)
    if device == "cpu" and reduced and head_dim < CPU_REDUCED_PRECISION_MIN_HEAD_DIM:
        return torch.float32
    return dtype


class Attention(nn.Module):
    """Multi-head self-attention with optional q/v bias (never a k bias) and QK-norm.

    ``attn_mask`` (optional) is a boolean ``[B, 1, 1, T]`` or ``[B, 1, T, T]`` tensor, True where
    attention is allowed; padded key positions are masked out so they change nothing for real ones.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias: nn.Parameter | None
        self.v_bias: nn.Parameter | None
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        # Call the qkv module itself (not F.linear on its weight) so that adapters wrapping it,
        # such as peft's LoRA layers, take part; the q/v bias (no k bias) is added after.
        qkv = self.qkv(x)
        if self.q_bias is not None and self.v_bias is not None:  # both or neither
            qkv = qkv + torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        dtype = attention_dtype(q, self.head_dim)
        with torch.autocast(q.device.type, enabled=False):  # the dtype is chosen above
            x = F.scaled_dot_product_attention(
                q.to(dtype), k.to(dtype), v.to(dtype), attn_mask=attn_mask,
                dropout_p=self.attn_drop if self.training else 0.0,
            )
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Linear -> activation -> Linear -> dropout (dropout after fc2 only, as the official code)."""

    def __init__(self, dim: int, hidden_dim: int, activation: type[nn.Module] = nn.GELU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = activation()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-LN transformer block with optional layer scale (``init_values > 0``) and drop path."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        init_values: float = 0.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm,
                              norm_eps=norm_eps, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, activation=activation, drop=drop)
        self.gamma_1: nn.Parameter | None
        self.gamma_2: nn.Parameter | None
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_out = self.attn(self.norm1(x), attn_mask=attn_mask)
        if self.gamma_1 is not None:
            attn_out = self.gamma_1 * attn_out
        x = x + self.drop_path(attn_out)
        mlp_out = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            mlp_out = self.gamma_2 * mlp_out
        return x + self.drop_path(mlp_out)
