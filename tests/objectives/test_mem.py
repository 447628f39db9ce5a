"""Masked EEG modelling: symmetric passes, padding, bf16 agreement, cached token targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurofm.models.labram import LABRAM_CONFIGS
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.registry import create_model
from neurofm.objectives.mem import MaskedEEGModelling
from neurofm.objectives.token_cache import TokenTargetCache, tokenizer_fingerprint


def _batch(batch_size: int = 4, n_chans: int = 5, seconds: int = 2, padded: bool = True) -> dict:
    generator = torch.Generator().manual_seed(7)
    mask = torch.ones(batch_size, n_chans, dtype=torch.bool)
    if padded:
        mask[0, 3:] = False
    return {
        "signal": 0.3 * torch.randn(batch_size, n_chans, 200 * seconds, generator=generator),
        "channel_index": torch.randint(0, 128, (batch_size, n_chans), generator=generator),
        "channel_mask": mask,
        "index": torch.arange(batch_size),
    }


def _objective(**kwargs) -> MaskedEEGModelling:
    torch.manual_seed(0)
    model = LabramForMaskedEEG(LABRAM_CONFIGS["small"], vocab_size=64)
    tokenizer = create_model("vqnsp_small", n_codes=64, kmeans_init=False)
    return MaskedEEGModelling(model, tokenizer, generator=torch.Generator().manual_seed(3), **kwargs)


@pytest.mark.parametrize("padded", [False, True])
def test_batched_symmetric_pass_equals_two_passes(padded: bool) -> None:
    batch = _batch(padded=padded)
    one = _objective(batched_symmetric=True)
    two = _objective(batched_symmetric=False)
    out_one, out_two = one(batch), two(batch)
    torch.testing.assert_close(out_one.loss, out_two.loss, rtol=1e-5, atol=1e-5)
    out_one.loss.backward()
    out_two.loss.backward()
    for (name, p1), (_, p2) in zip(one.model.named_parameters(), two.model.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_tokenizer_stays_frozen_in_training_mode() -> None:
    objective = _objective().train()
    assert not objective.tokenizer.training
    before = objective.tokenizer.quantizer.codebook.clone()
    objective(_batch()).loss.backward()
    assert torch.equal(objective.tokenizer.quantizer.codebook, before)
    assert all(p.grad is None for p in objective.tokenizer.parameters())


def test_bf16_autocast_loss_tracks_fp32_over_a_few_steps() -> None:
    losses = {}
    for dtype in (None, torch.bfloat16):
        objective = _objective(autocast_dtype=dtype).train()
        optimizer = torch.optim.AdamW(objective.model.parameters(), lr=1e-3)
        history = []
        for _ in range(3):
            loss = objective(_batch()).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        losses[dtype] = torch.tensor(history)
    # bf16 keeps ~3 significant digits; the documented tolerance is 2% of the loss.
    torch.testing.assert_close(losses[torch.bfloat16], losses[None], rtol=0.02, atol=0)


def test_token_cache_serves_the_second_epoch_and_persists(tmp_path: Path) -> None:
    objective = _objective()
    fingerprint = tokenizer_fingerprint(objective.tokenizer)
    objective.token_cache = TokenTargetCache(fingerprint, tmp_path)
    batch = _batch()
    first = objective.targets(batch)
    second = objective.targets(batch)
    assert torch.equal(first, second)
    assert (objective.token_cache.misses, objective.token_cache.hits) == (4, 4)
    objective.token_cache.save()
    reloaded = TokenTargetCache(fingerprint, tmp_path)
    assert len(reloaded) == 4
    assert torch.equal(reloaded.targets(batch, compute=lambda: pytest.fail("recomputed")), first)


def test_token_cache_is_invalidated_by_a_changed_tokenizer_or_window(tmp_path: Path) -> None:
    objective = _objective()
    batch = _batch()
    cache = TokenTargetCache(tokenizer_fingerprint(objective.tokenizer), tmp_path)
    objective.token_cache = cache
    objective.targets(batch)
    cache.save()
    with torch.no_grad():
        objective.tokenizer.code_projection[0].weight.add_(0.1)
    assert tokenizer_fingerprint(objective.tokenizer) != cache.fingerprint
    assert len(TokenTargetCache(tokenizer_fingerprint(objective.tokenizer), tmp_path)) == 0
    changed = dict(batch, signal=batch["signal"] + 0.01)
    cache.targets(changed, compute=lambda: torch.zeros(4, 10, dtype=torch.long))
    assert cache.misses == 8  # both passes recomputed every window
