"""Engine benchmarks: the cost of the training loop around a step, and DDP scaling on one machine.

1. Engine overhead. Neuro-BERT (paper size, ``neurobert_base``) with the FIP objective on
   19-channel x 4-s windows, batch 16, one thread. The reference is a bare loop written by hand
   in the same run (forward, backward, clipping, fused AdamW, scheduler; one pre-collated batch,
   nothing else). The engine runs the same number of steps through
   :class:`~neurofm.engine.trainer.Trainer` from a ``DataLoader``, once logging every step with
   three checkpoints, and once with its defaults (log every 10 steps, checkpoint at the end).
   Overhead = engine time / bare time - 1, best of interleaved rounds.
2. DDP scaling. The same job for a fixed number of steps in one process (one thread) and in two
   ``torchrun`` processes (Gloo, one thread each, the same per-process batch): efficiency =
   two-process samples/s / (2 x one-process samples/s).

Run: ``python benchmarks/bench_engine.py [--quick]``. On a shared machine the timings move with
the load of other processes; every figure comes from this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CHANNELS, SECONDS, BATCH = 19, 4, 16


def _dataset(n: int):
    from torch.utils.data import Dataset

    class Windows(Dataset):
        def __init__(self) -> None:
            generator = torch.Generator().manual_seed(0)
            self.signal = torch.randn(n, CHANNELS, SECONDS * 200, generator=generator)

        def __len__(self) -> int:
            return n

        def __getitem__(self, index: int) -> dict:
            return {"signal": self.signal[index], "channel_index": torch.arange(CHANNELS),
                    "channel_mask": torch.ones(CHANNELS, dtype=torch.bool),
                    "index": torch.tensor(index)}

    return Windows()


def _objective():
    from neurofm.models.registry import create_model
    from neurofm.objectives.fip import FourierInversionPrediction

    torch.manual_seed(0)
    return FourierInversionPrediction(create_model("neurobert_base", n_times=SECONDS * 200))


def _config(steps: int, log_every: int, checkpoint_every: int):
    from neurofm.engine.config import PretrainConfig, load_config

    return load_config(PretrainConfig, overrides=[
        "objective=fip", f"data.batch_size={BATCH}", f"run.max_steps={steps}",
        f"run.log_every_steps={log_every}", f"run.checkpoint_every_steps={checkpoint_every}",
        "run.progress=false", "run.device=cpu", "run.eval_every_epochs=0"])


def _bare_seconds(steps: int) -> float:
    """Wall time of ``steps`` hand-written training steps on one pre-collated batch."""
    from neurofm.engine.optim import build_optimizer, build_scheduler

    config = _config(steps, 10, 0)
    objective = _objective()
    optimizer = build_optimizer(objective, config.optim, lr=1e-3)
    scheduler = build_scheduler(optimizer, steps, 1, 0.01)
    data = _dataset(BATCH)
    batch = {key: torch.stack([data[i][key] for i in range(BATCH)]) for key in data[0]}
    params = [p for p in objective.parameters() if p.requires_grad]
    start = time.perf_counter()
    for _ in range(steps):
        loss = objective(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return time.perf_counter() - start


def _engine_seconds(steps: int, log_every: int, checkpoint_every: int) -> float:
    """Wall time of ``Trainer.fit`` over ``steps`` steps (data loading, logging to CSV and
    TensorBoard, checkpoints, and the final checkpoint included)."""
    from neurofm.engine.distributed import DistributedContext
    from neurofm.engine.trainer import Trainer

    config = _config(steps, log_every, checkpoint_every)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(_objective(), config, run_dir, _dataset(BATCH * steps),
                          ctx=DistributedContext())
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def _ddp_samples_per_second(steps: int, processes: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory() as run_dir:
        result = Path(run_dir) / "result.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", __file__, "--ddp-worker", run_dir, str(steps)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
        return json.loads(result.read_text())["samples_per_s"]


def _ddp_worker(run_dir: str, steps: int) -> None:
    from neurofm.engine.distributed import init_distributed, shutdown_distributed
    from neurofm.engine.trainer import Trainer

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    config = _config(steps, 10, 0)
    config.run.tensorboard = False
    trainer = Trainer(_objective(), config, Path(run_dir) / "run",
                      _dataset(BATCH * ctx.world_size * steps), ctx=ctx)
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    if ctx.is_main:
        samples = steps * BATCH * ctx.world_size
        (Path(run_dir) / "result.json").write_text(json.dumps({"samples_per_s": samples / elapsed}))
    shutdown_distributed()


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (see the module docstring)."""
    steps, rounds = (8, 2) if quick else (30, 3)
    # One thread, rounds interleaved, best round kept: on a shared two-core machine this is what
    # keeps the load of other processes out of the comparison.
    torch.set_num_threads(1)
    bare, verbose, default = [], [], []
    for _ in range(rounds):
        bare.append(_bare_seconds(steps) / steps)
        verbose.append(_engine_seconds(steps, log_every=1, checkpoint_every=max(steps // 3, 1)) / steps)
        default.append(_engine_seconds(steps, log_every=10, checkpoint_every=0) / steps)
    bare_s, verbose_s, default_s = min(bare), min(verbose), min(default)
    common = (f"batch {BATCH} of {CHANNELS} ch x {SECONDS} s, 1 thread, {steps} steps, best of "
              f"{rounds} interleaved rounds; engine time includes the DataLoader and the final checkpoint")
    rows = [
        {"benchmark": "engine overhead, log every step + 3 checkpoints per run (FIP, neurobert_base)",
         "value": 100.0 * (verbose_s / bare_s - 1.0), "unit": "% of step time",
         "reference": "bare hand-written step loop, same model and batch (s/step)",
         "reference_value": bare_s, "target": "< 5% of step time",
         "note": f"engine {verbose_s:.3f} s/step; {common}"},
        {"benchmark": "engine overhead, defaults: log every 10 steps, checkpoint at the end (FIP, neurobert_base)",
         "value": 100.0 * (default_s / bare_s - 1.0), "unit": "% of step time",
         "reference": "bare hand-written step loop, same model and batch (s/step)",
         "reference_value": bare_s, "target": "< 5% of step time",
         "note": f"engine {default_s:.3f} s/step; {common}"},
    ]
    ddp_steps = 8 if quick else 20
    one = max(_ddp_samples_per_second(ddp_steps, 1) for _ in range(rounds - 1))
    two = max(_ddp_samples_per_second(ddp_steps, 2) for _ in range(rounds - 1))
    rows.append({
        "benchmark": "DDP scaling efficiency, 2 CPU processes (Gloo, FIP, neurobert_base)",
        "value": 100.0 * two / (2.0 * one), "unit": "%",
        "reference": "1 process, 1 thread, same per-process batch (samples/s)",
        "reference_value": one, "target": "report",
        "note": f"2 processes x 1 thread: {two:.1f} samples/s; per-process batch {BATCH}; "
                f"{ddp_steps} steps incl. the first; best of {rounds - 1} runs each; the two cores "
                "are shared with other work",
    })
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--ddp-worker":
        _ddp_worker(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
