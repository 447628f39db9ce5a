"""The one mask sampler shared by masked-EEG modelling (LaBraM) and FIP (Neuro-BERT).

Per sample, exactly ``floor(L * (1 - ratio))`` of its L real tokens are kept, chosen uniformly by
argsort of uniform noise (the official ``random_masking``); the rest are masked. Padding tokens
(``valid`` False) are never masked and never count towards L.
"""

from __future__ import annotations

import torch


def random_token_mask(
    batch_size: int,
    n_tokens: int,
    ratio: float = 0.5,
    valid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sample a boolean mask ``[batch_size, n_tokens]``, True = masked.

    Args:
        batch_size, n_tokens: mask shape (tokens in the model's channel-major order).
        ratio: fraction of each sample's real tokens to mask (``ceil`` of ``L * ratio`` are masked).
        valid: optional bool ``[batch_size, n_tokens]``, False for padding tokens.
        generator: a seeded generator for reproducible masks.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if valid is None:
        valid = torch.ones(batch_size, n_tokens, dtype=torch.bool, device=device)
    valid = valid.to(device) if device is not None else valid
    noise = torch.rand(batch_size, n_tokens, generator=generator,
                       device=generator.device if generator is not None else valid.device)
    noise = noise.to(valid.device)
    # Padding sorts last, so the kept tokens are drawn among the real ones only.
    noise = noise.masked_fill(~valid, 2.0)
    order = noise.argsort(dim=1)
    ranks = order.argsort(dim=1)
    n_keep = (valid.sum(dim=1) * (1.0 - ratio)).floor().long()
    keep = ranks < n_keep[:, None]
    return valid & ~keep
