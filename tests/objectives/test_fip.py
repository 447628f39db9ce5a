"""Fourier Inversion Prediction: the inversion, the masked loss, gradients, and a toy it learns."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.errors import ConfigError
from neurofm.models.neurobert import neurobert_base, neurobert_small
from neurofm.objectives.base import ObjectiveOutput
from neurofm.objectives.fip import (
    FourierInversionPrediction,
    fip_reconstruct,
    normalise_phase,
    patch_spectrum,
)
from neurofm.objectives.patch_reconstruction import masked_patch_mse, spectral_errors


def _batch(batch_size: int = 4, n_chans: int = 3, n_times: int = 800) -> dict[str, torch.Tensor]:
    return {
        "signal": torch.randn(batch_size, n_chans, n_times),
        "channel_index": torch.arange(n_chans).expand(batch_size, n_chans).clone(),
        "channel_mask": torch.ones(batch_size, n_chans, dtype=torch.bool),
    }


def test_inversion_reproduces_a_patch_from_its_true_spectrum() -> None:
    patches = torch.randn(6, 200)
    amplitude, phase_vec = patch_spectrum(patches)
    assert amplitude.shape == (6, 101) and phase_vec.shape == (6, 101, 2)
    torch.testing.assert_close(fip_reconstruct(amplitude, phase_vec, 200), patches,
                               atol=1e-5, rtol=0)


def test_inversion_of_a_known_spectrum_is_the_cosine_sum() -> None:
    # x[n] = P^-1/2 sum_k w_k A_k cos(2 pi k n / P + phi_k), w = 1 at DC and Nyquist, else 2.
    patch_len, bins = 16, 9
    amplitude = torch.zeros(bins)
    amplitude[[0, 3, 8]] = torch.tensor([0.5, 2.0, 0.25])
    phase = torch.zeros(bins)
    phase[3] = 0.7
    phase[8] = 1.2  # Nyquist: only the real part survives, cos(1.2)
    phase_vec = torch.stack((torch.cos(phase), torch.sin(phase)), dim=-1)
    n = torch.arange(patch_len, dtype=torch.float64)
    expected = (0.5 + 2 * 2.0 * torch.cos(2 * math.pi * 3 * n / patch_len + 0.7)
                + 0.25 * math.cos(1.2) * torch.cos(math.pi * n)) / math.sqrt(patch_len)
    torch.testing.assert_close(fip_reconstruct(amplitude, phase_vec, patch_len).double(),
                               expected, atol=1e-5, rtol=0)


def test_inversion_is_exact_on_real_eeg_patches(mirror_dir: Path) -> None:
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(mirror_dir / "eegmat" / "Subject00_1.edf", preload=False,
                              verbose="error")
    microvolts = raw.get_data(picks=[0, 1], start=0, stop=2000) * 1e6
    patches = torch.from_numpy((microvolts / 100.0).astype(np.float32)).reshape(2, 10, 200)
    torch.testing.assert_close(fip_reconstruct(*patch_spectrum(patches), 200), patches,
                               atol=1e-5, rtol=1e-5)


def test_phase_is_a_unit_vector_even_for_tiny_predictions() -> None:
    phase = normalise_phase(torch.tensor([[3.0, 4.0], [1e-9, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(phase[0], torch.tensor([0.6, 0.8]))
    assert torch.isfinite(phase).all()


def test_worked_example_shapes_of_methods_section_7() -> None:
    model = neurobert_base().eval()
    objective = FourierInversionPrediction(model)
    signal = torch.randn(8, 19, 2000)
    hidden = model.forward_encoder(model.patchify(signal))
    amplitude, phase_vec = objective.predict_spectrum(hidden)
    assert hidden.shape == (8, 190, 128)
    assert amplitude.shape == (8, 190, 101) and phase_vec.shape == (8, 190, 101, 2)
    assert (amplitude >= 0).all()
    assert objective.reconstruct(hidden).shape == (8, 190, 200)


def test_forward_returns_loss_and_detached_metrics() -> None:
    output = FourierInversionPrediction(neurobert_small())(_batch())
    assert isinstance(output, ObjectiveOutput)
    assert output.loss.ndim == 0 and output.loss.requires_grad and torch.isfinite(output.loss)
    assert set(output.metrics) == {"masked_mse", "amplitude_mse", "phase_error"}
    assert all(not value.requires_grad for value in output.metrics.values())
    torch.testing.assert_close(output.metrics["masked_mse"], output.loss.detach())


def _run_with_mask(objective: FourierInversionPrediction, batch: dict, mask: torch.Tensor,
                   monkeypatch: pytest.MonkeyPatch) -> ObjectiveOutput:
    import neurofm.objectives.patch_reconstruction as module

    monkeypatch.setattr(module, "random_token_mask", lambda *args, **kwargs: mask)
    return objective(batch)


def test_loss_is_zero_for_a_perfect_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    model = neurobert_small().eval()
    objective = FourierInversionPrediction(model)
    batch = _batch(2, 2, 600)
    target = model.patch_targets(model.patchify(batch["signal"]))
    monkeypatch.setattr(objective, "predict_spectrum",
                        lambda hidden: patch_spectrum(target))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, ::2] = True
    output = _run_with_mask(objective, batch, mask, monkeypatch)
    assert output.loss.item() < 1e-10
    assert output.metrics["amplitude_mse"].item() < 1e-10
    assert output.metrics["phase_error"].item() < 1e-6


def test_only_masked_patches_contribute_to_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    model = neurobert_small().eval()
    objective = FourierInversionPrediction(model).eval()
    batch = _batch(2, 2, 600)
    mask = torch.tensor([[True, False, False, True, False, True]] * 2)
    base = _run_with_mask(objective, batch, mask, monkeypatch).loss
    # Change the visible targets only: the prediction sees them too, so freeze the prediction.
    prediction = objective.reconstruct
    frozen = prediction(model.forward_encoder(model.patchify(batch["signal"]), token_mask=mask))
    monkeypatch.setattr(objective, "reconstruct", lambda hidden: frozen)
    real_targets = model.patch_targets
    monkeypatch.setattr(model, "patch_targets",
                        lambda patches: torch.where(~mask[..., None], 50.0, real_targets(patches)))
    torch.testing.assert_close(objective(batch).loss, base)
    monkeypatch.setattr(model, "patch_targets",
                        lambda patches: torch.where(mask[..., None], 50.0, real_targets(patches)))
    assert objective(batch).loss > base + 100


def test_loss_on_all_patches_counts_visible_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    model = neurobert_small().eval()
    batch = _batch(2, 2, 600)
    mask = torch.tensor([[True, False, False, True, False, True]] * 2)
    masked_only = _run_with_mask(FourierInversionPrediction(model), batch, mask, monkeypatch)
    everything = _run_with_mask(FourierInversionPrediction(model, loss_on="all"), batch, mask,
                                monkeypatch)
    assert not torch.allclose(masked_only.loss, everything.loss)


def test_masked_patch_mse_matches_the_formula() -> None:
    prediction, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    selected = torch.rand(2, 5) > 0.5
    selected[0, 0] = True
    expected = ((prediction - target) ** 2).sum(-1)[selected].sum() / (selected.sum() * 8)
    torch.testing.assert_close(masked_patch_mse(prediction, target, selected), expected)


def test_spectral_errors_score_amplitude_and_phase_separately() -> None:
    target = torch.randn(2, 5, 40)
    selected = torch.tensor([[True, False, True, False, False]] * 2)
    for prediction, expected_phase in ((target, 0.0), (-target, 2.0)):
        amplitude_mse, phase_error = spectral_errors(prediction, target, selected)
        assert amplitude_mse.item() < 1e-10  # a sign flip keeps every amplitude
        assert abs(phase_error.item() - expected_phase) < 1e-5
    louder, _ = spectral_errors(2 * target, target, selected)
    expected = torch.fft.rfft(target, norm="ortho").abs()[selected].pow(2).mean()
    torch.testing.assert_close(louder, expected)


def test_gradients_reach_every_encoder_parameter() -> None:
    model = neurobert_small()
    objective = FourierInversionPrediction(model)
    objective(_batch()).loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith(("fc_norm", "head")):  # the fine-tuning head is not used here
            continue
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_mask_ratio_sets_the_number_of_masked_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    import neurofm.objectives.patch_reconstruction as module

    seen: list[torch.Tensor] = []
    real_sampler = module.random_token_mask

    def recording_sampler(*args, **kwargs):
        seen.append(real_sampler(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(module, "random_token_mask", recording_sampler)
    FourierInversionPrediction(neurobert_small(), mask_ratio=0.3)(_batch(2, 5, 800))
    assert seen[0].sum(dim=1).tolist() == [6, 6]  # ceil(20 * 0.3)


def test_padding_never_masked_and_leaves_the_loss_unchanged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import neurofm.objectives.patch_reconstruction as module

    objective = FourierInversionPrediction(neurobert_small()).eval()
    real = _batch(2, 3, 600)
    padded = {
        "signal": torch.cat([real["signal"], 1e3 * torch.randn(2, 2, 600)], dim=1),
        "channel_index": torch.zeros(2, 5, dtype=torch.long),
        "channel_mask": torch.tensor([[True] * 3 + [False] * 2] * 2),
    }
    sampled = module.random_token_mask(2, 15, 0.5, valid=torch.tensor([[True] * 9 + [False] * 6] * 2))
    assert not sampled[:, 9:].any()  # the sampler never masks padding tokens
    mask = torch.rand(2, 9) < 0.5
    mask[:, 0] = True
    on_real = _run_with_mask(objective, real, mask, monkeypatch)
    with_padding = torch.cat([mask, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    on_padded = _run_with_mask(objective, padded, with_padding, monkeypatch)
    torch.testing.assert_close(on_padded.loss, on_real.loss, atol=1e-5, rtol=1e-5)


def test_mixed_mode_predicts_every_channel_per_token() -> None:
    model = neurobert_small(n_chans=8, patch_mode="mixed", patch_len=40)
    objective = FourierInversionPrediction(model)
    hidden = model.forward_encoder(model.patchify(torch.randn(2, 8, 400)))
    amplitude, phase_vec = objective.predict_spectrum(hidden)
    assert amplitude.shape == (2, 10, 8, 21) and phase_vec.shape == (2, 10, 8, 21, 2)
    output = objective(_batch(2, 8, 400))
    output.loss.backward()
    assert torch.isfinite(output.loss) and model.patch_embed.weight.grad is not None


def test_cartesian_head_inverts_its_real_and_imaginary_parts() -> None:
    model = neurobert_small()
    objective = FourierInversionPrediction(model, spectrum="cartesian")
    assert not hasattr(objective, "amplitude_head") and not hasattr(objective, "phase_head")
    bins = model.config.n_bins
    with torch.no_grad():
        objective.spectrum_head.weight.zero_()
        parts = torch.zeros(bins, 2)
        parts[3] = torch.tensor([2.0, -1.0])  # X_3 = 2 - i
        objective.spectrum_head.bias.copy_(parts.flatten())
    hidden = torch.randn(2, 5, model.config.embed_dim)
    n = torch.arange(200, dtype=torch.float64)
    # irfft(norm="ortho") of one bin k: (2/sqrt(P)) (Re X_k cos(2πkn/P) - Im X_k sin(2πkn/P)).
    expected = 2 / math.sqrt(200) * (2 * torch.cos(2 * math.pi * 3 * n / 200)
                                     + torch.sin(2 * math.pi * 3 * n / 200))
    reconstruction = objective.reconstruct(hidden)
    torch.testing.assert_close(reconstruction.double(), expected.expand(2, 5, 200), atol=1e-6, rtol=1e-6)
    amplitude, phase_vec = objective.predict_spectrum(hidden)
    torch.testing.assert_close(amplitude[0, 0, 3], torch.tensor(math.sqrt(5.0)))
    torch.testing.assert_close(fip_reconstruct(amplitude, phase_vec, 200), reconstruction,
                               atol=1e-6, rtol=1e-6)


def test_unknown_spectrum_parameterisation_is_refused() -> None:
    with pytest.raises(ConfigError, match="spectrum='spherical'"):
        FourierInversionPrediction(neurobert_small(), spectrum="spherical")


def test_batch_at_another_sampling_rate_is_rejected() -> None:
    batch = {**_batch(), "sfreq": 250.0}
    with pytest.raises(ConfigError, match="sfreq"):
        FourierInversionPrediction(neurobert_small())(batch)


def test_empty_masked_loss_is_rejected_at_construction() -> None:
    with pytest.raises(ConfigError, match="mask_ratio=0"):
        FourierInversionPrediction(neurobert_small(), mask_ratio=0.0)
    FourierInversionPrediction(neurobert_small(), mask_ratio=0.0, loss_on="all")


def test_bf16_autocast_gives_a_finite_float32_loss() -> None:
    objective = FourierInversionPrediction(neurobert_small())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = objective(_batch())
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    output.loss.backward()


@pytest.mark.usefixtures("single_thread")
def test_sine_plus_noise_toy_is_learned_to_low_loss(
        sine_plus_noise: Callable[[torch.Generator], dict]) -> None:
    # The z-scored noise floor is about 0.02; predicting zeros scores about 1.
    model = neurobert_small(patch_len=40, n_times=320)
    objective = FourierInversionPrediction(model, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(150):
        output = objective(sine_plus_noise(data))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert losses[0] > 1.0
    assert sum(losses[-20:]) / 20 < 0.1


def test_fip_trains_on_real_myo_emg_in_device_units(mirror_dir: Path) -> None:
    from neurofm.data.layouts import read_myo_gesture_file

    recording = read_myo_gesture_file(mirror_dir / "myo_gestures" / "right_hand" / "12345-1"
                                      / "1.txt")
    assert recording.unit == "device" and recording.signal.shape[0] == 8
    windows = torch.from_numpy(recording.signal[:, : 4 * 400]).reshape(8, 4, 400).transpose(0, 1)
    model = neurobert_small(n_chans=8, patch_mode="mixed", patch_len=40,
                            sfreq=recording.sfreq, input_unit=recording.unit)
    patches = model.patchify(windows)  # counts in [-128, 127] become dimensionless
    flat = patches.reshape(4, 8, -1)
    torch.testing.assert_close(flat.mean(-1), torch.zeros(4, 8), atol=1e-4, rtol=0)
    objective = FourierInversionPrediction(model)
    batch = {"signal": windows, "channel_mask": torch.ones(4, 8, dtype=torch.bool),
             "sfreq": recording.sfreq}
    output = objective(batch)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.blocks.parameters())
