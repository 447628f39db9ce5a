"""Engine benchmarks: the cost of the training loop around a step, and DDP scaling on one machine.

1. Engine overhead. Neuro-BERT (paper size, ``neurobert_base``) with the FIP objective on
   19-channel x 4-s windows, batch 16. The reference is a bare loop written by hand in the same
   run (forward, backward, clipping, fused AdamW, scheduler; one pre-collated batch, nothing
   else). The engine runs the same steps through :class:`~neurofm.engine.trainer.Trainer` from a
   ``DataLoader``, once with logging every step plus a checkpoint every 20 steps, and once with
   its defaults (log every 10 steps, checkpoints at the end only). Overhead = engine / bare - 1.
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
    from neurofm.engine.config import load_config, PretrainConfig

    return load_config(PretrainConfig, overrides=[
        "objective=fip", f"data.batch_size={BATCH}", f"run.max_steps={steps}",
        f"run.log_every_steps={log_every}", f"run.checkpoint_every_steps={checkpoint_every}",
        "run.progress=false", "run.device=cpu", "run.eval_every_epochs=0"])


def _bare_seconds_per_step(steps: int) -> float:
    from neurofm.engine.optim import build_optimizer, build_scheduler

    config = _config(steps, 10, 0)
    objective = _objective()
    optimizer = build_optimizer(objective, config.optim, lr=1e-3)
    scheduler = build_scheduler(optimizer, steps, 1, 0.01)
    data = _dataset(BATCH)
    batch = {key: torch.stack([data[i][key] for i in range(BATCH)]) for key in data[0]}
    params = [p for p in objective.parameters() if p.requires_grad]

    def step() -> None:
        loss = objective(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    for _ in range(3):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _engine_seconds_per_step(steps: int, log_every: int, checkpoint_every: int,
                             tensorboard: bool) -> float:
    from neurofm.engine.distributed import DistributedContext
    from neurofm.engine.trainer import Trainer

    config = _config(steps + 3, log_every, checkpoint_every)
    config.run.tensorboard = tensorboard
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(_objective(), config, run_dir, _dataset(BATCH * (steps + 3)),
                          ctx=DistributedContext())
        # The first three steps warm up the allocator, as in the bare loop; time the rest.
        trainer.config.run.max_steps = 3
        trainer.total_steps = 3
        trainer.fit()
        trainer.total_steps = steps + 3
        start = time.perf_counter()
        trainer.fit(resume=True)
        return (time.perf_counter() - start) / steps


def _ddp_samples_per_second(steps: int, processes: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory() as run_dir:
        result = Path(run_dir) / "result.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", __file__, "--ddp-worker", run_dir, str(steps)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
        return json.loads(result.read_text())["samples_per_s"]


def _ddp_worker(run_dir: str, steps: int) -> None:
    from neurofm.engine.distributed import init_distributed, shutdown_distributed
    from neurofm.engine.trainer import Trainer

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    warmup = 3
    config = _config(warmup + steps, 10, 0)
    config.run.tensorboard = False
    trainer = Trainer(_objective(), config, Path(run_dir) / "run", _dataset(BATCH * 2 * (warmup + steps)),
                      ctx=ctx)
    trainer.config.run.max_steps = warmup
    trainer.total_steps = warmup
    trainer.fit()
    trainer.total_steps = warmup + steps
    start = time.perf_counter()
    trainer.fit(resume=True)
    elapsed = time.perf_counter() - start
    if ctx.is_main:
        samples = steps * BATCH * ctx.world_size
        (Path(run_dir) / "result.json").write_text(json.dumps({"samples_per_s": samples / elapsed}))
    shutdown_distributed()


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (see the module docstring)."""
    steps = 10 if quick else 40
    torch.set_num_threads(2)
    bare = _bare_seconds_per_step(steps)
    verbose = _engine_seconds_per_step(steps, log_every=1, checkpoint_every=20, tensorboard=True)
    default = _engine_seconds_per_step(steps, log_every=10, checkpoint_every=0, tensorboard=True)
    rows = [
        {"benchmark": "engine overhead, log every step + checkpoint every 20 steps (FIP, neurobert_base)",
         "value": 100.0 * (verbose / bare - 1.0), "unit": "% of step time",
         "reference": "bare hand-written step loop, same model and batch",
         "reference_value": bare, "target": "< 5% of step time",
         "note": f"engine {verbose:.3f} s/step vs bare {bare:.3f} s/step; batch {BATCH} of "
                 f"{CHANNELS} ch x {SECONDS} s; {steps} timed steps; includes the DataLoader"},
        {"benchmark": "engine overhead, defaults (log every 10 steps) (FIP, neurobert_base)",
         "value": 100.0 * (default / bare - 1.0), "unit": "% of step time",
         "reference": "bare hand-written step loop, same model and batch",
         "reference_value": bare, "target": "< 5% of step time",
         "note": f"engine {default:.3f} s/step vs bare {bare:.3f} s/step; {steps} timed steps"},
    ]
    ddp_steps = 6 if quick else 20
    one = _ddp_samples_per_second(ddp_steps, 1)
    two = _ddp_samples_per_second(ddp_steps, 2)
    rows.append({
        "benchmark": "DDP scaling efficiency, 2 CPU processes (Gloo, FIP, neurobert_base)",
        "value": 100.0 * two / (2.0 * one), "unit": "%",
        "reference": "1 process, 1 thread, same per-process batch (samples/s)",
        "reference_value": one, "target": "report",
        "note": f"2 processes x 1 thread: {two:.1f} samples/s; per-process batch {BATCH}; "
                f"{ddp_steps} timed steps; both cores of this machine are shared with other work",
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
