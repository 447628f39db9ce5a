"""Worker run by torchrun in the distributed tests (not a test module).

Usage: ``torchrun --standalone --nproc_per_node=N ddp_worker.py RUN_DIR STRATEGY BATCH_SIZE
[DROPOUT CRASH_AT RESUME]``. Trains the toy objective for a few steps and writes each rank's final
weights to ``RUN_DIR/rank<r>.pt``; with CRASH_AT > 0 every rank is killed at that forward call,
with RESUME = 1 the run continues from RUN_DIR's checkpoints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_training import ToyObjective, ToyWindows, toy_config

from neurofm.engine import distributed
from neurofm.engine.trainer import Trainer


def main() -> None:
    run_dir, strategy, batch_size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    dropout, crash_at, resume = (float(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1") \
        if len(sys.argv) > 4 else (0.0, 0, False)
    ctx = distributed.init_distributed("cpu")
    config = toy_config(data={"batch_size": batch_size},
                        run={"max_steps": 6, "distributed": strategy, "checkpoint_every_steps": 3})
    torch.manual_seed(0)
    # Four validation windows: one batch, so rank 1 evaluates nothing and must still take part.
    objective = ToyObjective(dropout=dropout, crash_at=crash_at or None)
    trainer = Trainer(objective, config, run_dir, ToyWindows(64), ToyWindows(4, seed=1), ctx=ctx)
    trainer.fit(resume=resume)
    state = distributed.model_state_dict(trainer.model)
    if strategy == "ddp" or ctx.is_main:
        torch.save(state, run_dir / f"rank{ctx.rank}.pt")
    distributed.shutdown_distributed()


if __name__ == "__main__":
    main()
