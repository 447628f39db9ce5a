"""The VQ-NSP tokenizer: codebook maintenance, usage report, dead-code restart, DDP agreement."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofm.models.registry import create_model
from neurofm.models.vqnsp import NormEMAQuantizer, fourier_targets


def _unit(n: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_kmeans_init_fills_the_codebook_with_unit_vectors() -> None:
    quantizer = NormEMAQuantizer(n_codes=16, dim=8).train()
    assert not bool(quantizer.initialized)
    quantizer(_unit(200, 8, 0))
    assert bool(quantizer.initialized)
    torch.testing.assert_close(quantizer.codebook.norm(dim=1), torch.ones(16))


def test_ema_update_keeps_codes_unit_norm_and_moves_only_used_codes() -> None:
    quantizer = NormEMAQuantizer(n_codes=16, dim=8, kmeans_init=False).train()
    before = quantizer.codebook.clone()
    z = _unit(4, 8, 1)
    ids, _quantized, loss = quantizer(z)
    moved = (quantizer.codebook - before).abs().sum(dim=1) > 0
    assert set(moved.nonzero().flatten().tolist()) == set(ids.tolist())
    torch.testing.assert_close(quantizer.codebook.norm(dim=1), torch.ones(16))
    assert loss.item() > 0


def test_straight_through_gradient_reaches_the_encoder_output() -> None:
    quantizer = NormEMAQuantizer(n_codes=16, dim=8, kmeans_init=False).eval()
    z = _unit(5, 8, 2).requires_grad_(True)
    _, quantized, _ = quantizer(z)
    quantized.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_eval_mode_leaves_the_codebook_alone() -> None:
    quantizer = NormEMAQuantizer(n_codes=16, dim=8, kmeans_init=False).eval()
    before = quantizer.codebook.clone()
    quantizer(_unit(50, 8, 3))
    torch.testing.assert_close(quantizer.codebook, before, rtol=0, atol=0)


def test_usage_report_and_dead_code_restart() -> None:
    quantizer = NormEMAQuantizer(n_codes=32, dim=8, kmeans_init=False).train()
    # Every vector lies near one code, so all other codes go unused.
    z = F.normalize(quantizer.codebook[3] + 0.01 * torch.randn(64, 8), dim=-1)
    for _ in range(5):
        quantizer(z)
    report = quantizer.usage_report()
    assert report["dead_codes"] == 31 and report["used_fraction"] == pytest.approx(1 / 32)
    assert report["perplexity"] == pytest.approx(1.0)
    fresh = _unit(100, 8, 4)
    restarted = quantizer.restart_dead_codes(fresh, generator=torch.Generator().manual_seed(0))
    assert restarted == 31
    assert quantizer.usage_report()["dead_codes"] == 0
    # Restarted codes are rows of the batch, so they now win assignments.
    ids, _, _ = quantizer.eval()(fresh)
    assert len(set(ids.tolist())) > 5


def test_fourier_targets_are_zscored_per_sample() -> None:
    patches = torch.randn(3, 4, 2, 200)
    amplitude, phase = fourier_targets(patches)
    assert amplitude.shape == phase.shape == (3, 8, 200)
    torch.testing.assert_close(amplitude.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(phase.std(dim=(1, 2)), torch.ones(3), atol=1e-5, rtol=0)


def test_tokens_ignore_padded_channels() -> None:
    tokenizer = create_model("vqnsp_small", n_codes=64, kmeans_init=False).eval()
    x = torch.randn(1, 3, 400)
    padded = torch.cat((x, 9 * torch.randn(1, 2, 400)), dim=1)
    index = torch.tensor([[0, 2, 41]])
    padded_index = torch.tensor([[0, 2, 41, 0, 0]])
    mask = torch.tensor([[True, True, True, False, False]])
    alone = tokenizer.get_codebook_indices(x, index)
    with_padding = tokenizer.get_codebook_indices(padded, padded_index, mask)
    assert torch.equal(with_padding[0, :6], alone[0])
    assert bool((with_padding[0, 6:] == -1).all())


def _ddp_worker(rank: int, world_size: int, init_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(100 + rank)  # each rank samples different data and different k-means draws
    quantizer = NormEMAQuantizer(n_codes=32, dim=8, kmeans_init=True).train()
    for step in range(4):
        quantizer(F.normalize(torch.randn(48 + 8 * rank, 8), dim=-1))
        if step == 2:
            quantizer.restart_dead_codes(F.normalize(torch.randn(16, 8), dim=-1), dead_below=0.5)
    torch.save({"codebook": quantizer.codebook, "usage": quantizer.usage}, f"{result_file}.{rank}")
    dist.destroy_process_group()


def test_ddp_ranks_keep_an_identical_codebook(tmp_path) -> None:
    init_file = str(tmp_path / "init")
    result_file = str(tmp_path / "result")
    mp.spawn(_ddp_worker, args=(2, init_file, result_file), nprocs=2, join=True)
    first, second = (torch.load(f"{result_file}.{r}", weights_only=True) for r in range(2))
    torch.testing.assert_close(first["codebook"], second["codebook"], rtol=0, atol=0)
    torch.testing.assert_close(first["usage"], second["usage"], rtol=0, atol=0)
    assert float(first["usage"].sum()) > 0


@settings(max_examples=25, deadline=None)
@given(n_real=st.integers(1, 4), n_pad=st.integers(0, 3), n_patches=st.integers(1, 3),
       seed=st.integers(0, 10_000))
def test_fourier_targets_of_real_tokens_ignore_padding(n_real: int, n_pad: int, n_patches: int,
                                                       seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(1, n_real, n_patches, 200, generator=generator)
    padded = torch.cat((real, 5 * torch.randn(1, n_pad, n_patches, 200, generator=generator)), dim=1)
    valid = torch.tensor([[True] * n_real + [False] * n_pad]).repeat_interleave(n_patches, dim=1)
    alone = fourier_targets(real)
    with_padding = fourier_targets(padded, valid)
    for expected, actual in zip(alone, with_padding):
        torch.testing.assert_close(actual[:, : n_real * n_patches], expected, rtol=1e-4, atol=1e-4)
