"""Model benchmarks: LaBraM-Base masked-EEG training step, VQ-NSP tokenizer step, inference.

Workload (issue 11): batch 8 of 19 channels × 10 s for the training steps, batch 32 for inference,
AdamW, synthetic EEG-like input in 100 µV. The machine's fp32 and bf16 matmul rates are measured
in the same run (``reference.py``), once at the start and again just before and after every timed
row (the machine may be shared; each row is normalised by the rate measured beside it);
throughput is reported per fp32 GFLOP/s so that it compares with
the official code's figures measured on another machine of the same kind (issue 11:
0.0267 masked-modelling samples/s, 0.0586 tokenizer samples/s and 0.000721 hours of EEG/s per
fp32 GFLOP/s).

Masked-modelling step, each lever alone and all together, against the plain fp32 step (tokenizer
computing targets, two separate symmetric passes, SDPA forced to its unfused math kernel,
for-loop AdamW):
``bf16`` autocast (only where the bf16 matmul rate beats fp32: on a CPU without bf16 units it is
many times slower, and the row says so), ``cached targets``, ``batched symmetric``, ``SDPA``
(fused kernel), ``fused AdamW``, optionally ``torch.compile`` (``--compile``, also an inference
row; minutes to compile on a 2-core CPU). Each workload also gets an untimed *fp32 ceiling* row:
its counted FLOPs at 100% of the fp32 matmul rate, per fp32 GFLOP/s, beside its target, which
says whether fp32 alone could meet the target at all. Model FLOPs are counted with
``torch.utils.flop_counter`` (network forward and backward of both passes; the tokenizer's
forward separately); MFU is network FLOP/s over each measured matmul rate. Peak memory is the
rise of the process RSS (CPU) or peak allocated (CUDA) during the measured steps. The
fp32-vs-bf16 agreement runs a few optimiser steps from the same initialisation on the same
batches and reports the largest relative loss difference (documented tolerance 2%).

``--quick`` (a smoke check, about two minutes on an idle 2-core CPU): batch 2 of 4-s windows for the
training steps, batch 8 for inference, only the plain and all-levers configurations, one timed step;
its per-GFLOP/s figures are not the issue-11 workload.

Run: ``python benchmarks/bench_models.py [--quick] [--compile]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference
from neurofm.channels import vocabulary_indices
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.registry import create_model
from neurofm.models.vqnsp import VQNSP
from neurofm.objectives.mem import MaskedEEGModelling
from neurofm.objectives.token_cache import TokenTargetCache, tokenizer_fingerprint
from neurofm.objectives.vq import VQNSPObjective

TEN_TWENTY = ["FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3",
              "PZ", "P4", "T6", "O1", "O2"]
# Official figures per fp32 GFLOP/s of their machine (issue 11) and the targets built on them.
OFFICIAL_MEM_PER_GFLOPS = 0.0267
OFFICIAL_TOKENIZER_PER_GFLOPS = 12.6 / 215
OFFICIAL_INFERENCE_PER_GFLOPS = 0.155 / 215
BF16_LOSS_TOLERANCE = 0.02


def _batch(batch_size: int, seconds: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    time_axis = torch.arange(200 * seconds) / 200.0
    alpha = 0.2 * torch.sin(2 * torch.pi * 10 * time_axis)
    signal = 0.1 * torch.randn(batch_size, len(TEN_TWENTY), 200 * seconds, generator=generator) + alpha
    index = torch.tensor(vocabulary_indices(TEN_TWENTY)).expand(batch_size, -1)
    return {"signal": signal.to(device), "channel_index": index.to(device),
            "channel_mask": torch.ones(batch_size, len(TEN_TWENTY), dtype=torch.bool, device=device),
            "index": torch.arange(batch_size, device=device)}


class _PeakMemory:
    """Peak memory rise during a block: CUDA peak allocated, or sampled process RSS on CPU."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> _PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = self._rss()
        self._peak = self._base
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return
        self._running = False
        self._thread.join()
        self.peak_bytes = self._peak - self._base

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while self._running:
            self._peak = max(self._peak, self._rss())
            time.sleep(0.005)


def _time_steps(step: Callable[[], object], steps: int, device: str) -> tuple[float, int]:
    """Seconds per step (mean over ``steps`` after one untimed warm-up) and the peak memory rise
    from before the warm-up (which allocates optimiser state and caches) to the end."""
    with _PeakMemory(device) as memory:
        elapsed = reference.seconds_per_step(step, steps, device)
    return elapsed, memory.peak_bytes


def _time_with_rate(step: Callable[[], object], steps: int, device: str) -> tuple[float, int, float]:
    """``_time_steps`` plus the fp32 matmul rate measured just before and after (their mean):
    on a shared machine the rate available to the steps drifts, so each row is normalised by the
    rate measured next to it."""
    before = reference.matmul_gflops(torch.float32, repeats=2, device=device)
    seconds, peak = _time_steps(step, steps, device)
    after = reference.matmul_gflops(torch.float32, repeats=2, device=device)
    return seconds, peak, (before + after) / 2


def _count_flops(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def _mem_step_flops(plain: MaskedEEGModelling, batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """FLOPs of one MEM step of ``plain``: the network's forward and backward, the tokenizer's."""
    network = _count_flops(
        lambda: plain(dict(batch, token_targets=plain.targets(batch))).loss.backward())
    return network, _count_flops(lambda: plain.targets(batch))


def _train_step(objective: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    def step() -> float:
        loss = objective(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    return step


def _row(benchmark: str, value: float, unit: str, reference_name: str = "",
         reference_value: float | None = None, target: str = "", note: str = "") -> dict:
    print(f"[bench_models] {benchmark}: {value:.4g} {unit}; {note}", file=sys.stderr, flush=True)
    return {"benchmark": benchmark, "value": value, "unit": unit, "reference": reference_name,
            "reference_value": reference_value, "target": target, "note": note}


def _mem_objective(model: LabramForMaskedEEG, tokenizer: VQNSP, levers: set[str]) -> MaskedEEGModelling:
    cache = None
    if "cached targets" in levers:
        cache = TokenTargetCache(tokenizer_fingerprint(tokenizer))
    return MaskedEEGModelling(
        model, tokenizer, batched_symmetric="batched symmetric" in levers, token_cache=cache,
        autocast_dtype=torch.bfloat16 if "bf16" in levers else None,
        generator=torch.Generator().manual_seed(1),
    ).train()


def bench_mem(quick: bool, device: str, rates: dict[str, float], use_compile: bool) -> list[dict]:
    """The masked-modelling step, plain and with each lever (see the module docstring)."""
    batch_size, steps = (2, 1) if quick else (8, 2)
    batch = _batch(batch_size, 4 if quick else 10, device)
    torch.manual_seed(0)
    base_model = create_model("labram_base_mem").to(device)
    tokenizer = create_model("vqnsp_base", kmeans_init=False).to(device).eval()
    bf16_fast = rates["bf16"] > rates["fp32"]
    levers = ["bf16", "cached targets", "batched symmetric", "SDPA", "fused AdamW"]
    if use_compile:
        levers.append("torch.compile")
    usable = [lever for lever in levers if lever != "bf16" or bf16_fast]
    configs: list[tuple[str, set[str]]] = [("plain fp32", set())]
    if not quick:  # the quick path measures only the two ends
        configs += [(lever, {lever}) for lever in levers]
    configs.append(("all levers", set(usable)))

    # Model FLOPs of one step: network forward + backward of both passes; tokenizer forward.
    network_flops, tokenizer_flops = _mem_step_flops(
        _mem_objective(copy.deepcopy(base_model), tokenizer, set()), batch)

    rows = []
    plain_rate = None
    for name, active in configs:
        if "bf16" in active and not bf16_fast:
            rows.append(_row(f"MEM step Base, lever: {name}", float("nan"), "samples/s",
                             note=f"not run: bf16 matmul {rates['bf16']:.3g} GFLOP/s is slower than fp32 "
                                  f"{rates['fp32']:.3g} GFLOP/s on this CPU (no bf16 units)"))
            continue
        model = copy.deepcopy(base_model)
        objective = _mem_objective(model, tokenizer, active)
        fused = "fused AdamW" in active
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), weight_decay=0.05,
                                      foreach=False if not fused else None, fused=True if fused else None)
        forward = objective
        if "torch.compile" in active:
            forward = torch.compile(objective)
        kernel = (contextlib.nullcontext() if "SDPA" in active or name == "all levers"
                  else sdpa_kernel(SDPBackend.MATH))
        with kernel:
            seconds, peak, fp32 = _time_with_rate(_train_step(forward, optimizer, batch), steps, device)
        samples = batch_size / seconds
        plain_rate = plain_rate or samples
        computed_targets = "cached targets" not in active
        flops = network_flops / seconds
        per_gflops = samples / fp32
        note = (f"{seconds:.2f} s/step, {network_flops / 1e9:.1f} GFLOP network"
                f"{f' + {tokenizer_flops / 1e9:.1f} GFLOP tokenizer' if computed_targets else ' (targets cached)'}"
                f"; MFU {flops / 1e9 / fp32:.1%} of fp32 ({fp32:.1f} GFLOP/s measured beside it), "
                f"{flops / 1e9 / rates['bf16']:.1%} of bf16;"
                f" peak memory +{peak / 2**20:.0f} MiB; {samples / plain_rate:.2f}x plain;"
                f" {per_gflops:.4f} samples/s per fp32 GFLOP/s")
        workload = f"batch {batch_size}, 19ch x {batch['signal'].shape[-1] // 200} s, lever: {name}"
        rows.append(_row(f"MEM step Base, {workload}", samples,
                         "samples/s", "official code per fp32 GFLOP/s x this machine's fp32 rate",
                         OFFICIAL_MEM_PER_GFLOPS * fp32,
                         ">= 2x official per fp32 GFLOP/s (0.053)" if name == "all levers" else "", note))
        del model, objective, optimizer
    rows.append(_fp32_ceiling_row(
        f"MEM step Base, batch {batch_size}", batch_size / (network_flops / 1e9), "samples/s",
        2 * OFFICIAL_MEM_PER_GFLOPS, "network forward and backward, targets cached"))
    return rows


def _fp32_ceiling_row(workload: str, per_gflops: float, unit: str, target: float, counted: str) -> dict:
    """What a workload would reach per fp32 GFLOP/s if all its counted FLOPs ran at the fp32
    matmul rate (100% MFU), against its issue-11 target: above the target, fp32 alone can meet
    it; below, only bf16 (or a GPU) can."""
    return _row(f"{workload}: fp32 ceiling (100% MFU)", per_gflops, f"{unit} per fp32 GFLOP/s",
                "issue-11 target per fp32 GFLOP/s", target, "informative",
                f"computed from counted FLOPs ({counted}), not timed; the target needs "
                f"{target / per_gflops:.0%} of the fp32 matmul rate")


def bench_bf16_agreement(quick: bool, device: str) -> list[dict]:
    """Loss after a few AdamW steps in bf16 autocast against fp32, same init and batches."""
    steps = 3 if quick else 10
    batch = _batch(2, 2 if quick else 4, device)
    torch.manual_seed(0)
    model = create_model("labram_small_mem").to(device)
    tokenizer = create_model("vqnsp_small", kmeans_init=False).to(device).eval()
    histories = {}
    for dtype in (None, torch.bfloat16):
        trained = copy.deepcopy(model)
        objective = MaskedEEGModelling(trained, tokenizer, autocast_dtype=dtype,
                                       generator=torch.Generator().manual_seed(1)).train()
        # A high learning rate leaves the near-uniform initial predictions within a few steps.
        optimizer = torch.optim.AdamW(trained.parameters(), lr=3e-3)
        step = _train_step(objective, optimizer, batch)
        histories[dtype] = [step() for _ in range(steps)]
    worst = max(abs(b - f) / abs(f) for f, b in zip(histories[None], histories[torch.bfloat16]))
    return [_row(f"MEM bf16 vs fp32 loss agreement ({steps} AdamW steps, small model)", worst,
                 "max relative loss difference", "documented tolerance", BF16_LOSS_TOLERANCE,
                 f"<= {BF16_LOSS_TOLERANCE}",
                 f"fp32 losses {[round(v, 4) for v in histories[None]]}, "
                 f"bf16 {[round(v, 4) for v in histories[torch.bfloat16]]}")]


def bench_tokenizer(quick: bool, device: str, rates: dict[str, float]) -> list[dict]:
    """VQ-NSP training step: plain fp32, fused AdamW, bf16 autocast (where bf16 is fast)."""
    batch_size, steps = (2, 1) if quick else (8, 3)
    batch = _batch(batch_size, 4 if quick else 10, device)
    torch.manual_seed(0)
    base = create_model("vqnsp_base").to(device)
    # k-means init happens on the first training forward: do it once, outside the timing.
    base.train()
    with torch.no_grad():
        base(batch["signal"], batch["channel_index"])
    flops = _count_flops(lambda: VQNSPObjective(copy.deepcopy(base)).train()(batch).loss.backward())
    rows = []
    plain_rate = None
    for name in ("plain fp32",) if quick else ("plain fp32", "fused AdamW", "bf16 + fused AdamW"):
        if "bf16" in name and rates["bf16"] <= rates["fp32"]:
            rows.append(_row(f"tokenizer step, lever: {name}", float("nan"), "samples/s",
                             note="not run: bf16 matmul slower than fp32 on this CPU"))
            continue
        tokenizer = copy.deepcopy(base)
        objective = VQNSPObjective(tokenizer, autocast_dtype=torch.bfloat16 if "bf16" in name else None).train()
        fused = "fused" in name
        optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=5e-5, betas=(0.9, 0.99), weight_decay=1e-4,
                                      foreach=False if not fused else None, fused=True if fused else None)
        seconds, peak, fp32 = _time_with_rate(_train_step(objective, optimizer, batch), steps, device)
        samples = batch_size / seconds
        plain_rate = plain_rate or samples
        workload = f"batch {batch_size}, 19ch x {batch['signal'].shape[-1] // 200} s, lever: {name}"
        rows.append(_row(f"tokenizer step VQ-NSP Base, {workload}", samples, "samples/s",
                         "official code per fp32 GFLOP/s x this machine's fp32 rate",
                         OFFICIAL_TOKENIZER_PER_GFLOPS * fp32, ">= 1.5x official per fp32 GFLOP/s",
                         f"{seconds:.2f} s/step, {flops / 1e9:.1f} GFLOP; MFU "
                         f"{flops / seconds / 1e9 / fp32:.1%} of fp32 ({fp32:.1f} GFLOP/s measured beside it); "
                         f"peak memory +{peak / 2**20:.0f} MiB;"
                         f" {samples / plain_rate:.2f}x plain; {samples / fp32:.4f} samples/s per fp32 GFLOP/s"))
    rows.append(_fp32_ceiling_row(f"tokenizer step VQ-NSP Base, batch {batch_size}",
                                  batch_size / (flops / 1e9), "samples/s",
                                  1.5 * OFFICIAL_TOKENIZER_PER_GFLOPS, "forward and backward"))
    return rows


def bench_inference(quick: bool, device: str, rates: dict[str, float],
                    use_compile: bool = False) -> list[dict]:
    """Backbone embedding throughput in hours of EEG per second (batch 32 of 19 ch × 10 s)."""
    batch_size, steps = (8, 1) if quick else (32, 3)
    batch = _batch(batch_size, 10, device)
    torch.manual_seed(0)
    model = create_model("labram_base", ch_names=TEN_TWENTY).to(device).eval()
    compiled = torch.compile(model) if use_compile else None
    flops = _count_flops(lambda: model(batch["signal"]))
    names = ["fp32"] if quick else ["fp32, SDPA math kernel", "fp32", "bf16"]
    if use_compile:
        names.append("fp32, torch.compile")
    rows = []
    for name in names:
        if name == "bf16" and rates["bf16"] <= rates["fp32"]:
            rows.append(_row("inference Base, lever: bf16", float("nan"), "hours of EEG/s",
                             note="not run: bf16 matmul slower than fp32 on this CPU"))
            continue
        network = compiled if "compile" in name else model

        def embed(name: str = name, network: torch.nn.Module = network) -> torch.Tensor:
            kernel = sdpa_kernel(SDPBackend.MATH) if "math" in name else contextlib.nullcontext()
            autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=name == "bf16")
            with torch.inference_mode(), kernel, autocast:
                return network(batch["signal"])

        label = name
        if "compile" in name:
            started = time.perf_counter()
            embed()
            label += f" (compiled in {time.perf_counter() - started:.0f} s, not timed)"

        seconds, peak, fp32 = _time_with_rate(embed, steps, device)
        hours = batch_size * 10 / 3600 / seconds
        rows.append(_row(f"inference Base, batch {batch_size}, 19ch x 10 s, {label}", hours, "hours of EEG/s",
                         "official code per fp32 GFLOP/s x this machine's fp32 rate",
                         OFFICIAL_INFERENCE_PER_GFLOPS * fp32, ">= 3x official per fp32 GFLOP/s",
                         f"{seconds:.2f} s/batch, MFU {flops / seconds / 1e9 / fp32:.1%} of fp32 "
                         f"({fp32:.1f} GFLOP/s measured beside it); "
                         f"peak memory +{peak / 2**20:.0f} MiB; {hours / fp32:.6f} h/s per fp32 GFLOP/s"))
    rows.append(_fp32_ceiling_row(f"inference Base, batch {batch_size}",
                                  batch_size * 10 / 3600 / (flops / 1e9), "hours of EEG/s",
                                  3 * OFFICIAL_INFERENCE_PER_GFLOPS, "forward"))
    return rows


def run(quick: bool = False, use_compile: bool = False) -> list[dict]:
    """Every model benchmark row (matmul rates measured first, in the same process)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rates = {"fp32": reference.matmul_gflops(torch.float32, device=device),
             "bf16": reference.matmul_gflops(torch.bfloat16, device=device)}
    rows = [_row(f"models: {name} matmul rate used for MFU ({device})", rate, "GFLOP/s",
                 note=reference.describe_machine()) for name, rate in rates.items()]
    rows += bench_mem(quick, device, rates, use_compile)
    rows += bench_bf16_agreement(quick, device)
    rows += bench_tokenizer(quick, device, rates)
    rows += bench_inference(quick, device, rates, use_compile)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()
    for row in run(quick=args.quick, use_compile=args.compile):
        value = row["value"]
        print(f"{row['benchmark']}: {value:.4g} {row['unit']} | ref {row['reference_value']} | {row['note']}")


if __name__ == "__main__":
    main()
