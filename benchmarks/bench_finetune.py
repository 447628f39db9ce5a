"""Fine-tuning benchmarks: training-step throughput per mode, and bf16 embedding agreement.

Workload: LaBraM-Base with a binary head (one logit), batch 32 of 19 channels x 10 s (a TUAB-like
window) of synthetic EEG-like input in 100 uV, built and trained through the fine-tuning code
(:func:`neurofm.tasks.finetune.build_task_network`, the engine's AdamW with layer-wise lr decay).

- Step throughput (samples/s) of full fine-tuning, linear probing and LoRA (r = 8 on attn.qkv,
  attn.proj, mlp.fc1, mlp.fc2). Full fine-tuning is the reference measured in the same run;
  the frozen modes skip the backbone's weight gradients and optimizer work, so they should be
  faster.
- bf16 embedding agreement: the smallest cosine similarity between features computed under bf16
  autocast and in fp32 for the same windows (``neurofm embed --precision auto`` uses bf16 on
  CUDA). Inference throughput itself is measured in ``bench_models.py``.

Run: ``python benchmarks/bench_finetune.py [--quick]`` (quick: labram_small, batch 8).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference
from neurofm.channels import vocabulary_indices
from neurofm.engine.optim import build_optimizer
from neurofm.objectives.classification import SupervisedObjective
from neurofm.tasks.backbones import TaskNetwork, apply_mode, build_task_network, layer_decay_groups
from neurofm.tasks.definitions import get_task
from neurofm.tasks.embed import autocast_context
from neurofm.tasks.finetune_config import LoraSettings, load_finetune_config

TEN_TWENTY = ["FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3",
              "PZ", "P4", "T6", "O1", "O2"]
SECONDS = 10


def _batch(batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    time_axis = torch.arange(200 * SECONDS) / 200.0
    alpha = 0.2 * torch.sin(2 * torch.pi * 10 * time_axis)
    signal = 0.1 * torch.randn(batch_size, len(TEN_TWENTY), 200 * SECONDS, generator=generator)
    index = torch.tensor(vocabulary_indices(TEN_TWENTY)).expand(batch_size, -1)
    return {"signal": (signal + alpha).to(device), "channel_index": index.to(device),
            "channel_mask": torch.ones(batch_size, len(TEN_TWENTY), dtype=torch.bool,
                                       device=device),
            "label": (torch.arange(batch_size) % 2).to(device)}


def _train_step(objective: SupervisedObjective, optimizer: torch.optim.Optimizer,
                batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        loss = objective(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _network(model: str, mode: str, device: torch.device):
    config = load_finetune_config(flags={"task_name": "eegmat", "model": model})
    torch.manual_seed(0)
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 200 * SECONDS, "100uV")
    if mode != "full":
        # Step time does not depend on the base weights, so the frozen modes wrap the random
        # network (a fine-tuning job refuses LoRA from scratch, which would be meaningless).
        network = TaskNetwork(apply_mode(network.backbone, mode, LoraSettings()),
                              frozen_backbone=mode == "linear")
    return network.to(device), config


def bench_modes(model: str, batch_size: int, steps: int, device: torch.device) -> list[dict]:
    """Samples/s of one optimizer step in each mode (mean over ``steps`` after one warm-up)."""
    batch = _batch(batch_size, device)
    rates: dict[str, float] = {}
    notes: dict[str, str] = {}
    for mode in ("full", "linear", "lora"):
        network, config = _network(model, mode, device)
        objective = SupervisedObjective(network, "binary", 2).train()
        layer_of, depth = layer_decay_groups(network)
        optimizer = build_optimizer(objective, config.optim, config.optim.lr,
                                    layer_id=layer_of, num_layers=depth)
        seconds = reference.seconds_per_step(_train_step(objective, optimizer, batch), steps, device)
        rates[mode] = batch_size / seconds
        trainable = sum(p.numel() for p in objective.parameters() if p.requires_grad)
        notes[mode] = f"{seconds:.3f} s/step, {trainable:,} trainable parameters"
    workload = f"{model}, batch {batch_size} x 19 ch x {SECONDS} s, {device.type}"
    rows = [_row(f"fine-tune step, full (layer-wise lr decay), {workload}", rates["full"],
                 "samples/s", note=notes["full"])]
    for mode, label in (("linear", "linear probe (frozen backbone)"), ("lora", "LoRA r=8 + head")):
        rows.append(_row(f"fine-tune step, {label}, {workload}", rates[mode], "samples/s",
                         "full fine-tuning step (same run)", rates["full"],
                         "faster than full fine-tuning", notes[mode]))
    return rows


def bench_bf16_features(model: str, batch_size: int, device: torch.device) -> list[dict]:
    """Smallest cosine similarity of bf16-autocast and fp32 features of the same windows."""
    network, _ = _network(model, "full", device)
    network.eval()
    batch = _batch(batch_size, device)
    with torch.no_grad():
        reference = network.features(batch).float()
        with autocast_context(device, "bf16"):
            reduced = network.features(batch).float()
    cosine = F.cosine_similarity(reference, reduced, dim=1).min().item()
    relative = ((reduced - reference).norm(dim=1) / reference.norm(dim=1)).max().item()
    return [_row(f"embed bf16 vs fp32 features, {model}, batch {batch_size}, {device.type}", cosine,
                 "min cosine similarity", target=">= 0.99",
                 note=f"largest relative L2 difference {relative:.3g}")]


def _row(benchmark: str, value: float, unit: str, reference_name: str = "",
         reference_value: float | None = None, target: str = "", note: str = "") -> dict:
    return {"benchmark": benchmark, "value": value, "unit": unit, "reference": reference_name,
            "reference_value": reference_value, "target": target, "note": note}


def run(quick: bool = False) -> list[dict]:
    """Every fine-tuning benchmark row."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, batch_size, steps = ("labram_small", 8, 2) if quick else ("labram_base", 32, 3)
    return bench_modes(model, batch_size, steps, device) + bench_bf16_features(
        model, 8 if quick else batch_size, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        print(f"{row['benchmark']}: {row['value']:.4g} {row['unit']} | ref "
              f"{row['reference_value']} | {row['note']}")


if __name__ == "__main__":
    main()
