"""Time-domain masked autoencoding: the FIP ablation shares everything but the head."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from neurofm.models.neurobert import neurobert_small
from neurofm.objectives.fip import FourierInversionPrediction
from neurofm.objectives.mae_time import TimeDomainMAE


def _batch(batch_size: int = 4, n_chans: int = 3, n_times: int = 800) -> dict[str, torch.Tensor]:
    return {
        "signal": torch.randn(batch_size, n_chans, n_times),
        "channel_index": torch.arange(n_chans).expand(batch_size, n_chans).clone(),
        "channel_mask": torch.ones(batch_size, n_chans, dtype=torch.bool),
    }


def test_head_regresses_one_patch_per_token() -> None:
    model = neurobert_small(patch_len=100)
    objective = TimeDomainMAE(model)
    assert objective.time_head.out_features == 100
    hidden = model.forward_encoder(model.patchify(torch.randn(2, 3, 500)))
    assert objective.reconstruct(hidden).shape == (2, 15, 100)


def test_same_mask_and_targets_as_fip_give_the_same_loss_for_the_same_prediction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import neurofm.objectives.patch_reconstruction as module

    model = neurobert_small().eval()
    batch = _batch(2, 2, 600)
    mask = torch.tensor([[True, False, True, False, False, True]] * 2)
    monkeypatch.setattr(module, "random_token_mask", lambda *args, **kwargs: mask)
    prediction = torch.randn(2, 6, 200)
    fip, mae = FourierInversionPrediction(model), TimeDomainMAE(model)
    monkeypatch.setattr(fip, "reconstruct", lambda hidden: prediction)
    monkeypatch.setattr(mae, "reconstruct", lambda hidden: prediction)
    torch.testing.assert_close(fip(batch).loss, mae(batch).loss)


def test_loss_is_zero_for_a_perfect_prediction_and_ignores_visible_patches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import neurofm.objectives.patch_reconstruction as module

    model = neurobert_small().eval()
    objective = TimeDomainMAE(model)
    batch = _batch(2, 2, 600)
    mask = torch.tensor([[True, False, True, False, False, True]] * 2)
    monkeypatch.setattr(module, "random_token_mask", lambda *args, **kwargs: mask)
    target = model.patch_targets(model.patchify(batch["signal"]))
    wrong_where_visible = torch.where(mask[..., None], target, target + 10.0)
    monkeypatch.setattr(objective, "reconstruct", lambda hidden: wrong_where_visible)
    assert objective(batch).loss.item() < 1e-12


def test_gradients_reach_every_encoder_parameter() -> None:
    model = neurobert_small()
    TimeDomainMAE(model)(_batch()).loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith(("fc_norm", "head")):
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_mixed_mode_regresses_every_channel() -> None:
    model = neurobert_small(n_chans=4, patch_mode="mixed", patch_len=40)
    objective = TimeDomainMAE(model)
    hidden = model.forward_encoder(model.patchify(torch.randn(2, 4, 400)))
    assert objective.reconstruct(hidden).shape == (2, 10, 4, 40)
    assert torch.isfinite(objective(_batch(2, 4, 400)).loss)


@pytest.mark.usefixtures("single_thread")
def test_sine_plus_noise_toy_is_learned_to_low_loss(
        sine_plus_noise: Callable[[torch.Generator], dict]) -> None:
    model = neurobert_small(patch_len=40, n_times=320)
    objective = TimeDomainMAE(model, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(100):
        output = objective(sine_plus_noise(data))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert sum(losses[-20:]) / 20 < 0.1
