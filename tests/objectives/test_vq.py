"""The VQ-NSP training objective: loss terms, codebook metrics, dead-code restarts."""

from __future__ import annotations

import torch

from neurofm.models.registry import create_model
from neurofm.objectives.vq import VQNSPObjective


def _batch() -> dict:
    generator = torch.Generator().manual_seed(5)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    return {"signal": 0.3 * torch.randn(3, 4, 400, generator=generator),
            "channel_index": torch.randint(0, 128, (3, 4), generator=generator), "channel_mask": mask}


def test_training_reduces_the_tokenizer_loss() -> None:
    torch.manual_seed(0)
    objective = VQNSPObjective(create_model("vqnsp_small", n_codes=32)).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        out = objective(_batch())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    for key in ("quant_loss", "rec_amplitude", "rec_phase", "batch_perplexity", "codebook_used_fraction"):
        assert key in out.metrics
    assert 1.0 <= float(out.metrics["batch_perplexity"]) <= 32


def test_restart_runs_on_schedule_and_reports_the_count() -> None:
    torch.manual_seed(0)
    objective = VQNSPObjective(create_model("vqnsp_small", n_codes=64), restart_dead_every=2,
                               dead_below=0.5).train()
    first = objective(_batch())
    second = objective(_batch())
    assert "restarted_codes" not in first.metrics
    assert second.metrics["restarted_codes"] > 0
