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


def test_relative_dead_threshold_scales_with_the_mean_code_usage() -> None:
    torch.manual_seed(0)
    objective = VQNSPObjective(create_model("vqnsp_small", n_codes=64), restart_dead_every=1,
                               dead_fraction=0.4).train()
    out = objective(_batch())
    usage = objective.tokenizer.quantizer.usage
    threshold = 0.4 * float(usage.mean())
    assert objective._dead_threshold() == threshold
    # Every code below 40% of the mean usage was re-seeded and given the live codes' mean usage.
    assert out.metrics["restarted_codes"] > 0
    assert float(usage.min()) >= threshold


def test_checkpointed_step_counter_keeps_the_restart_schedule() -> None:
    objective = VQNSPObjective(create_model("vqnsp_small", n_codes=64), restart_dead_every=3).train()
    objective(_batch())
    objective(_batch())
    resumed = VQNSPObjective(create_model("vqnsp_small", n_codes=64), restart_dead_every=3)
    resumed.load_state_dict(objective.state_dict())
    assert int(resumed.steps) == 2
