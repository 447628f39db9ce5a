"""Neuro-BERT benchmarks: training-step throughput of FIP and mae-time, bf16 agreement, toy learning.

Throughput: one training step (forward, backward, AdamW) of ``neurobert_small`` and
``neurobert_base`` on a batch of 8 windows of 19 channels x 10 s at 200 Hz (190 tokens), in
samples per second, fp32 and under bf16 autocast. Each FIP row is compared with mae-time on the
same model and batch (the cost of the Fourier head), each bf16 row with fp32. Agreement: the
relative difference of the bf16-autocast and fp32 losses for the same weights, mask and batch.
Toy learning: the masked MSE that FIP (with its polar head, the specification, and with a
Cartesian head) and mae-time reach after the same number of steps on two
sine-plus-noise toys (a phase-locked 7 Hz sine, and a 7 Hz sine of random phase per sample),
which shows how each objective copes with phase it cannot yet predict; and the same on real
resting EEG from the eegmat mirror (read and preprocessed by neurofm).

Run: ``python benchmarks/bench_neurobert.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch

from neurofm.models.neurobert import NeuroBert, neurobert_base, neurobert_small
from neurofm.objectives.fip import FourierInversionPrediction
from neurofm.objectives.mae_time import TimeDomainMAE
from neurofm.objectives.patch_reconstruction import MaskedPatchObjective

MIRROR = Path(os.environ.get("NEUROFM_MIRROR",
                             Path(__file__).resolve().parents[2] / "shared" / "datasets"))
BATCH_SIZE, N_CHANS, N_TIMES = 8, 19, 2000
OBJECTIVES: dict[str, type[MaskedPatchObjective]] = {
    "fip": FourierInversionPrediction,
    "mae-time": TimeDomainMAE,
}
# The learning comparisons also run FIP with its Cartesian head (real and imaginary parts).
LEARNERS: dict[str, Callable[..., MaskedPatchObjective]] = {
    **OBJECTIVES, "fip-cartesian": partial(FourierInversionPrediction, spectrum="cartesian"),
}


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batch(device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "signal": torch.randn(BATCH_SIZE, N_CHANS, N_TIMES, generator=generator).to(device),
        "channel_index": torch.arange(N_CHANS).expand(BATCH_SIZE, N_CHANS).to(device),
        "channel_mask": torch.ones(BATCH_SIZE, N_CHANS, dtype=torch.bool, device=device),
    }


def _objective(model_name: str, objective: str, device: torch.device,
               seed: int = 0) -> MaskedPatchObjective:
    torch.manual_seed(seed)
    builder = neurobert_small if model_name == "neurobert_small" else neurobert_base
    model: NeuroBert = builder()
    return OBJECTIVES[objective](model, generator=torch.Generator().manual_seed(seed)).to(device)


def train_step_rates(model_name: str, steps: int, repeats: int = 3
                     ) -> dict[tuple[str, bool], float]:
    """Samples per second of full training steps, per ``(objective, bf16)``.

    The configurations are timed in turn within each repeat (best of ``repeats`` runs of
    ``steps``), so a busy shared machine slows them alike instead of biasing one of them.
    """
    device = _device()
    batch = _batch(device)
    steppers = {}
    for objective in OBJECTIVES:
        for bf16 in (False, True):
            module = _objective(model_name, objective, device)
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.01)
            steppers[(objective, bf16)] = _training_step(module, optimizer, batch, device, bf16)
    for step in steppers.values():
        for _ in range(2):  # warm-up: allocator, kernel selection, FFT plans
            step()
    best = dict.fromkeys(steppers, float("inf"))
    for _ in range(repeats):
        for key, step in steppers.items():
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            _synchronize(device)
            best[key] = min(best[key], time.perf_counter() - start)
    return {key: steps * BATCH_SIZE / seconds for key, seconds in best.items()}


def _training_step(module: MaskedPatchObjective, optimizer: torch.optim.Optimizer,
                   batch: dict[str, torch.Tensor], device: torch.device, bf16: bool
                   ) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = module(batch)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()

    return step


def bf16_loss_agreement(model_name: str, objective: str) -> tuple[float, float]:
    """``(relative |loss_bf16 - loss_fp32|, loss_fp32)`` for the same weights, mask and batch."""
    device = _device()
    module = _objective(model_name, objective, device).eval()
    batch = _batch(device)
    losses = []
    for bf16 in (False, True):
        module.generator = torch.Generator().manual_seed(1)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses.append(module(batch).loss.float().item())
    return abs(losses[1] - losses[0]) / losses[0], losses[0]


def _sine_toy(generator: torch.Generator, random_phase: bool) -> dict[str, torch.Tensor]:
    time_s = torch.arange(320) / 200.0
    phase = 0.3 + (2 * math.pi * torch.rand(16, 2, 1, generator=generator) if random_phase
                   else torch.zeros(16, 2, 1))
    signal = torch.sin(2 * math.pi * 7.0 * time_s + phase)
    signal = signal + 0.1 * torch.randn(16, 2, 320, generator=generator)
    return {"signal": signal, "channel_mask": torch.ones(16, 2, dtype=torch.bool)}


def toy_final_loss(objective: str, random_phase: bool, steps: int, seed: int = 0) -> float:
    """Mean masked MSE of the last 20 of ``steps`` AdamW steps (lr 3e-3) on a sine toy, CPU."""
    torch.manual_seed(seed)
    model = neurobert_small(patch_len=40, n_times=320)
    module = LEARNERS[objective](model, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.Generator().manual_seed(seed + 100)
    losses = []
    for _ in range(steps):
        output = module(_sine_toy(data, random_phase))
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    return sum(losses[-20:]) / 20


def eegmat_windows(n_files: int = 4, window: int = 800) -> torch.Tensor:
    """Non-overlapping 4-s windows ``[N, C, 800]`` (100 µV, 200 Hz) of the eegmat mirror's
    resting files, read and preprocessed by neurofm (LaBraM recipe: 0.1-75 Hz, 50 Hz notch)."""
    from neurofm.data.preprocess import PreprocessConfig, preprocess
    from neurofm.data.readers import read_recording

    files = sorted((MIRROR / "eegmat").glob("Subject*_1.edf"))[:n_files]
    if not files:
        raise FileNotFoundError(f"eegmat mirror not found under {MIRROR} (set NEUROFM_MIRROR)")
    windows = []
    for path in files:
        recording = preprocess(read_recording(path), PreprocessConfig())
        signal = torch.from_numpy(recording.signal)
        n_windows = signal.shape[1] // window
        windows.append(signal[:, : n_windows * window].reshape(signal.shape[0], n_windows, window)
                       .transpose(0, 1))
    return torch.cat(windows)


def eegmat_final_loss(objective: str, windows: torch.Tensor, steps: int, seed: int = 0) -> float:
    """Mean masked MSE of the last 20 of ``steps`` AdamW steps (lr 1e-3, batch 16) of
    ``neurobert_small`` on random eegmat windows, CPU."""
    torch.manual_seed(seed)
    module = LEARNERS[objective](neurobert_small(), generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.01)
    draws = torch.Generator().manual_seed(seed)
    mask = torch.ones(16, windows.shape[1], dtype=torch.bool)
    losses = []
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (16,), generator=draws)]
        output = module({"signal": batch, "channel_mask": mask, "sfreq": 200.0})
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    return sum(losses[-20:]) / 20


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (see the module docstring)."""
    return list(benchmark_rows(quick))


def benchmark_rows(quick: bool = False) -> Iterator[dict]:
    """The rows of :func:`run`, each yielded as soon as it is measured."""
    device = _device()
    shape = f"batch {BATCH_SIZE} x {N_CHANS} ch x {N_TIMES // 200} s, {device.type}"
    models = ("neurobert_small",) if quick else ("neurobert_small", "neurobert_base")
    steps, repeats = (2, 1) if quick else (5, 3)
    for model_name in models:
        rates = train_step_rates(model_name, steps, repeats)
        for objective in OBJECTIVES:
            for bf16 in (False, True):
                precision = "bf16 autocast" if bf16 else "fp32"
                if bf16:
                    reference, reference_value = f"{objective} fp32", rates[(objective, False)]
                    target = "bf16 >= fp32 on hardware with bf16 matmul"
                elif objective == "fip":
                    reference, reference_value = "mae-time fp32", rates[("mae-time", False)]
                    target = "FIP within 20% of mae-time (the FFT head is small)"
                else:
                    reference, reference_value, target = None, None, "informative"
                yield {
                    "benchmark": f"{model_name} {objective} train step {precision}",
                    "value": rates[(objective, bf16)], "unit": "samples/s",
                    "reference": reference, "reference_value": reference_value,
                    "target": target, "note": shape,
                }
            agreement, loss_fp32 = bf16_loss_agreement(model_name, objective)
            yield {
                "benchmark": f"{model_name} {objective} loss bf16 vs fp32",
                "value": agreement, "unit": "relative difference",
                "reference": "fp32 loss", "reference_value": loss_fp32,
                "target": "< 0.01", "note": f"same weights, mask and batch; {shape}",
            }
    toy_steps = 150 if quick else 500
    for random_phase in (False, True):
        toy = "random-phase" if random_phase else "phase-locked"
        yield from _fip_head_rows(
            f"{toy} 7 Hz sine toy", "same toy and steps", "",
            partial(toy_final_loss, random_phase=random_phase, steps=toy_steps),
            f"neurobert_small, P=40, mask 0.5, {toy_steps} AdamW steps at 3e-3, "
            "mean of last 20; zeros score ~1, noise floor ~0.02")
    eeg_steps = 60 if quick else 300
    windows = eegmat_windows()
    yield from _fip_head_rows(
        "eegmat resting EEG", "same data and steps", "< 1 (predicting zeros); ",
        lambda objective: eegmat_final_loss(objective, windows, eeg_steps),
        f"neurobert_small, {tuple(windows.shape)} windows of 4 s from 4 subjects, "
        f"mask 0.5, {eeg_steps} AdamW steps at 1e-3, batch 16, mean of last 20")


def _fip_head_rows(data: str, same: str, target: str, final_loss: Callable[[str], float],
                   note: str) -> Iterator[dict]:
    """One row per FIP head: its final masked MSE on ``data`` against mae-time's."""
    mae = final_loss("mae-time")
    for objective, label in (("fip", "FIP (polar head)"), ("fip-cartesian", "FIP (Cartesian head)")):
        yield {
            "benchmark": f"{label} masked MSE, {data}", "value": final_loss(objective),
            "unit": "masked MSE (z-scored)", "reference": f"mae-time, {same}",
            "reference_value": mae, "target": f"{target}[3P] claim (unverified): FIP <= mae-time",
            "note": note,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model, few steps")
    args = parser.parse_args()
    for row in benchmark_rows(quick=args.quick):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
