"""Worker run by torchrun in the distributed tests (not a test module).

Usage: ``torchrun --standalone --nproc_per_node=N ddp_worker.py RUN_DIR STRATEGY BATCH_SIZE``.
Trains the toy objective for a few steps and writes each rank's final weights to
``RUN_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_training import ToyObjective, ToyWindows, toy_config  # noqa: E402

from neurofm.engine import distributed  # noqa: E402
from neurofm.engine.trainer import Trainer  # noqa: E402


def main() -> None:
    run_dir, strategy, batch_size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ctx = distributed.init_distributed("cpu")
    config = toy_config(data={"batch_size": batch_size},
                        run={"max_steps": 6, "distributed": strategy, "checkpoint_every_steps": 3})
    torch.manual_seed(0)
    # Four validation windows: one batch, so rank 1 evaluates nothing and must still take part.
    trainer = Trainer(ToyObjective(dropout=0.0), config, run_dir, ToyWindows(64),
                      ToyWindows(4, seed=1), ctx=ctx)
    trainer.fit()
    state = distributed.model_state_dict(trainer.model)
    if strategy == "ddp" or ctx.is_main:
        torch.save(state, run_dir / f"rank{ctx.rank}.pt")
    distributed.shutdown_distributed()


if __name__ == "__main__":
    main()
