"""The shared transformer block's attention precision rule (models/blocks.py)."""

from __future__ import annotations

import torch

from neurofm.models.blocks import CPU_REDUCED_PRECISION_MIN_HEAD_DIM, Attention, attention_dtype


def test_small_cpu_heads_run_reduced_precision_attention_in_fp32() -> None:
    q = torch.zeros(1, 2, 3, 20, dtype=torch.bfloat16)
    assert attention_dtype(q, 20) == torch.float32
    assert attention_dtype(q.half(), 20) == torch.float32
    assert attention_dtype(q, CPU_REDUCED_PRECISION_MIN_HEAD_DIM) == torch.bfloat16
    assert attention_dtype(q.float(), 20) == torch.float32


def test_attention_under_bf16_autocast_agrees_with_fp32_and_trains() -> None:
    torch.manual_seed(0)
    attention = Attention(dim=40, num_heads=2, qk_norm=True)
    x = torch.randn(2, 7, 40, requires_grad=True)
    reference = attention(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = attention(x)
    assert reduced.dtype == torch.bfloat16  # the output projection still runs in bf16
    assert torch.allclose(reduced.float(), reference, atol=3e-2, rtol=3e-2)
    reduced.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
