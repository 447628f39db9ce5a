"""The one training loop every objective runs in (tokenizer, pretraining, fine-tuning).

An objective is an ``nn.Module`` whose ``forward(batch) -> ObjectiveOutput``; the :class:`Trainer`
owns everything around it: the deterministic sharded data order, AdamW and its schedule,
gradient accumulation and clipping, mixed precision, optional ``torch.compile``, DDP/FSDP,
non-finite loss handling, evaluation with best-checkpoint selection, checkpoints and resume,
metrics and a progress bar.

Resume is exact: a checkpoint records the model, optimizer, scheduler and scaler states, every
rank's RNG states, the position in the data order and the partial logging window, so a killed
run resumed with ``resume=True`` produces the same losses and weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from neurofm.engine import distributed as dist_utils
from neurofm.engine.checkpointing import CheckpointManager, capture_rng_state, restore_rng_state
from neurofm.engine.config import TrainConfig, save_config, to_dict
from neurofm.engine.data_order import DataOrder, GlobalBatches, round_robin, shuffled_batches
from neurofm.engine.distributed import DistributedContext
from neurofm.engine.metrics_log import MetricsLogger
from neurofm.engine.optim import build_optimizer, build_scheduler, scaled_learning_rates
from neurofm.errors import CheckpointError, ConfigError, TrainingError
from neurofm.objectives.base import ObjectiveOutput

logger = logging.getLogger(__name__)

# evaluate(objective, batches, ctx) -> {metric name: value}, already reduced over ranks.
Evaluator = Callable[[nn.Module, Iterable[dict[str, Any]], DistributedContext], dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    """What a finished :meth:`Trainer.fit` returns.

    ``losses`` holds the training loss of every optimizer step this process ran (NaN for a
    skipped step); ``last_metrics`` the last logged training line (loss, lr, the objective's
    metrics such as codebook usage); ``best`` is the best monitored value seen (``None`` without
    evaluation).
    """

    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    best: float | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None


def _size(data: Dataset) -> int:
    """Length of a map-style dataset (torch's Dataset declares no __len__; ours all have one)."""
    return len(cast(Sized, data))


class Trainer:
    """Train ``objective`` on ``train_data`` as ``config`` says, writing into ``run_dir``.

    Args:
        objective: ``nn.Module`` with ``forward(batch) -> ObjectiveOutput``; the model state
            saved in checkpoints is its ``state_dict`` (so buffers such as a VQ codebook are
            included).
        config: any :class:`TrainConfig` (its ``optim``, ``data`` and ``run`` sections are used).
        run_dir: run folder: ``config.yaml``, ``metrics.csv``, ``tensorboard/``, ``checkpoints/``.
        train_data, val_data: map-style datasets of samples that ``collate_fn`` batches into the
            batch dictionary.
        collate_fn: list of samples -> batch dict (default: torch's ``default_collate``).
        train_batches: epoch -> global batches function (default: a seeded shuffle of the
            whole dataset); pass :func:`~neurofm.engine.data_order.sampler_batches` of a
            shape-grouped sampler when windows differ in shape.
        val_batches: every validation batch (lists of indices; default: sequential batches of
            ``data.batch_size``), shared round-robin between ranks; all windows count.
        evaluate: validation hook (default: the objective's mean loss and metrics).
        layer_id, num_layers: layer-wise lr decay hook (used when ``optim.layer_decay`` is set).
        ctx: distributed context (default: :func:`~neurofm.engine.distributed.init_distributed`).
    """

    def __init__(
        self,
        objective: nn.Module,
        config: TrainConfig,
        run_dir: str | Path,
        train_data: Dataset,
        val_data: Dataset | None = None,
        collate_fn: Callable[[list[Any]], dict[str, Any]] = default_collate,
        train_batches: GlobalBatches | None = None,
        val_batches: Sequence[list[int]] | None = None,
        evaluate: Evaluator | None = None,
        layer_id: Callable[[str], int] | None = None,
        num_layers: int | None = None,
        ctx: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.ctx = ctx if ctx is not None else dist_utils.init_distributed(config.run.device)
        self.train_data = train_data
        self.val_data = val_data
        self.collate_fn = collate_fn
        self.evaluate_fn = evaluate or mean_validation_metrics
        run = config.run
        if run.precision == "fp16" and self.ctx.device.type != "cuda":
            raise ConfigError("config option run.precision=fp16 needs a CUDA device; "
                              "use run.precision=bf16 on the CPU")

        self.order = DataOrder(train_batches or shuffled_batches(_size(train_data), run.seed),
                               config.data.batch_size, self.ctx.rank, self.ctx.world_size)
        self.val_batches = val_batches
        micro_per_epoch = self.order.micro_batches_per_epoch()
        self.steps_per_epoch = micro_per_epoch // run.accumulation_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the training set ({_size(train_data)} windows) holds fewer than one optimizer "
                f"step of data (data.batch_size={config.data.batch_size} x "
                f"run.accumulation_steps={run.accumulation_steps} x {self.ctx.world_size} "
                "processes); lower the batch size or add data")
        self.total_steps = run.max_steps or config.optim.epochs * self.steps_per_epoch
        self.global_batch_size = config.data.batch_size * run.accumulation_steps * self.ctx.world_size

        # The raw module is what checkpoints hold; the wrapped one is what runs.
        self.module = objective.to(self.ctx.device)
        self.model = dist_utils.wrap_model(self.module, self.ctx, run.distributed)
        if run.compile:
            # The stub types the result as a callable; of a Module it is an OptimizedModule.
            self.model = torch.compile(self.model)  # type: ignore[assignment]
        lr, min_lr = scaled_learning_rates(config.optim, self.global_batch_size)
        self.optimizer = build_optimizer(self.module, config.optim, lr, layer_id=layer_id,
                                         num_layers=num_layers)
        warmup = round(config.optim.warmup_epochs * self.steps_per_epoch)
        if run.max_steps is not None:
            warmup = round(config.optim.warmup_epochs / config.optim.epochs * self.total_steps)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, min(warmup, self.total_steps),
                                         min_lr / lr)
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=run.precision == "fp16")
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep_last=run.keep_last,
                                             enabled=self.ctx.is_main)
        self._params = [p for p in self.module.parameters() if p.requires_grad]
        # What a step updates and a checkpoint saves: parameters and floating-point buffers (a VQ
        # codebook is a buffer), held once so the per-step finiteness check stays one fused call.
        self._state_tensors = [*self.module.parameters(),
                               *(b for b in self.module.buffers() if b.is_floating_point())]

        # Loop state (all of it checkpointed).
        self.step = 0
        self.epoch = 0
        self.micro_batch = 0
        self.best: float | None = None
        self.bad_streak = 0
        self.window = _LogWindow()
        self.last_logged: dict[str, float] = {}

    # -- public API -------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> TrainResult:
        """Run until ``run.max_steps`` or ``optim.epochs``; with ``resume``, continue from the
        newest usable checkpoint in ``run_dir``. Returns a :class:`TrainResult`.

        Raises :class:`~neurofm.errors.TrainingError` after ``run.max_bad_steps`` consecutive
        steps with a non-finite loss or gradient; the checkpoints written so far stay intact.
        """
        run = self.config.run
        if resume:
            self._resume()
        else:
            seed_everything(run.seed + self.ctx.rank)
        if self.ctx.is_main:
            save_config(self.config, self.run_dir / "config.yaml")
        metrics_log = MetricsLogger(self.run_dir, enabled=self.ctx.is_main,
                                    tensorboard=run.tensorboard,
                                    resume_step=self.step if resume else None)
        result = TrainResult(step=self.step, epoch=self.epoch, best=self.best)
        progress = _progress_bar(self.total_steps, self.step, enabled=run.progress and self.ctx.is_main)
        last_saved_step = self.step if resume else -1
        try:
            while self._more_to_do():
                epoch_batches = self.order.epoch(self.epoch)
                usable = len(epoch_batches) // run.accumulation_steps * run.accumulation_steps
                loader = self._loader(epoch_batches[self.micro_batch:usable])
                micro_in_step: list[dict[str, Any]] = []
                for batch in loader:
                    micro_in_step.append(batch)
                    if len(micro_in_step) < run.accumulation_steps:
                        continue
                    loss = self._optimizer_step(micro_in_step, metrics_log)
                    micro_in_step = []
                    self.micro_batch += run.accumulation_steps
                    result.losses.append(loss)
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss:.4f}", samples_s=f"{self.window.last_rate:.1f}")
                    if self.step >= self.total_steps or self.micro_batch >= usable:
                        break
                    # No checkpoint inside a run of skipped steps: the newest one stays a good one.
                    if (run.checkpoint_every_steps and self.step % run.checkpoint_every_steps == 0
                            and self.bad_streak == 0):
                        result.last_checkpoint = self._save()
                        last_saved_step = self.step
                if self.micro_batch >= usable:
                    self._end_epoch(metrics_log, result)
                    if self.bad_streak == 0:
                        result.last_checkpoint = self._save()
                        last_saved_step = self.step
                elif self.step >= self.total_steps:
                    break
            if last_saved_step != self.step:
                result.last_checkpoint = self._save()
        finally:
            progress.close()
            metrics_log.close()
        result.step, result.epoch, result.best = self.step, self.epoch, self.best
        result.last_metrics = dict(self.last_logged)
        if self.ctx.is_main and self.checkpoints.best_path().exists():
            result.best_checkpoint = self.checkpoints.best_path()
        return result

    def _more_to_do(self) -> bool:
        # With run.max_steps the run is as long as it says, however many epochs that takes.
        within_epochs = self.config.run.max_steps is not None or self.epoch < self.config.optim.epochs
        return self.step < self.total_steps and within_epochs

    def evaluate(self) -> dict[str, float]:
        """Run the validation hook on ``val_data`` (every rank); {} without validation data.

        The RNG is forked and seeded, so evaluation draws the same masks every time and leaves
        the training random stream untouched.
        """
        if self.val_data is None or _size(self.val_data) == 0:
            return {}
        batch_size = self.config.data.batch_size
        if self.val_batches is not None:
            batches = list(self.val_batches)
        else:
            indices = list(range(_size(self.val_data)))
            batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        mine = round_robin(batches, self.ctx.rank, self.ctx.world_size)
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.config.run.seed)
                with torch.no_grad(), self._autocast():
                    return self.evaluate_fn(self.module, self._loader(mine, self.val_data), self.ctx)
        finally:
            self.module.train(was_training)

    # -- one optimizer step -----------------------------------------------------------------

    def _optimizer_step(self, micro_batches: list[dict[str, Any]], metrics_log: MetricsLogger) -> float:
        run = self.config.run
        start = time.perf_counter()
        self.module.train()
        step_loss = torch.zeros((), device=self.ctx.device)
        step_metrics: dict[str, torch.Tensor] = {}
        n_micro = len(micro_batches)
        for index, batch in enumerate(micro_batches):
            batch = _to_device(batch, self.ctx.device)
            with dist_utils.gradient_sync(self.model, enabled=index == n_micro - 1):
                with self._autocast():
                    output: ObjectiveOutput = self.model(batch)
                loss = output.loss.float()
                # The backward runs even for a non-finite loss, so DDP's gradient hooks fire on
                # every rank alike; the update is what gets skipped.
                self.scaler.scale(loss / n_micro).backward()
            step_loss += loss.detach() / n_micro
            for name, value in output.metrics.items():
                value = torch.as_tensor(value, dtype=torch.float32).detach().to(self.ctx.device)
                step_metrics[name] = step_metrics.get(name, 0.0) + value / n_micro

        # One agreement per step: every rank skips together or steps together.
        finite = dist_utils.all_ranks_true(bool(torch.isfinite(step_loss)), self.ctx)
        grad_norm = torch.tensor(float("nan"))
        if finite:
            self.scaler.unscale_(self.optimizer)
            grad_norm = self._clip_gradients()
            # With fp16 the scaler itself skips steps whose gradients overflowed.
            if not bool(torch.isfinite(grad_norm)) and not self.scaler.is_enabled():
                finite = False
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._check_finite_weights()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0)
        self.scheduler.step()
        self.step += 1
        samples = sum(_batch_len(b) for b in micro_batches) * self.ctx.world_size
        elapsed = time.perf_counter() - start

        if finite:
            self.bad_streak = 0
            loss_value = float(step_loss)
            self.window.add(loss_value, {k: float(v) for k, v in step_metrics.items()},
                            float(grad_norm), samples, elapsed)
        else:
            self.bad_streak += 1
            loss_value = float("nan")
            metrics_log.log(self.step, self.epoch, "train", {"skipped_nonfinite": 1.0})
            logger.warning("step %d: non-finite loss or gradient; step skipped (%d in a row)",
                           self.step, self.bad_streak)
            self.window.add_skipped(samples, elapsed)
            if self.bad_streak >= run.max_bad_steps:
                last = self.checkpoints.periodic()
                where = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written"
                raise TrainingError(
                    f"training stopped at step {self.step}: the loss or gradient was not finite for "
                    f"{self.bad_streak} consecutive steps (run.max_bad_steps={run.max_bad_steps}); "
                    f"{where}. Lower optim.lr, enable optim.clip_grad_norm, use "
                    "run.precision=fp32, or check the data for NaN/Inf windows, then --resume")
        if self.step % run.log_every_steps == 0:
            self.last_logged = {**self.window.summary(), "lr": lr}
            metrics_log.log(self.step, self.epoch, "train", self.last_logged)
            self.window = _LogWindow(last_rate=self.window.last_rate)
        return loss_value

    def _check_finite_weights(self) -> None:
        """Stop the run when the update just applied made a parameter or buffer non-finite.

        One fused norm over the local tensors (1.3-3 ms for LaBraM-Base's 5.8 M parameters on
        two CPU cores, docs/reliability.md) and, in a distributed run, one agreement between ranks;
        it runs before anything of this step is saved, so no checkpoint or export is non-finite.
        """
        if dist_utils.all_ranks_true(all_finite(self._state_tensors), self.ctx):
            return
        optim = self.config.optim
        last = self.checkpoints.periodic()
        where = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written"
        raise TrainingError(
            f"training stopped at step {self.step + 1}: the optimizer update made the model's "
            f"weights NaN/Inf (the loss and gradients were finite), so nothing of this step was "
            f"saved; {where}. The learning rate or weight decay is probably too large "
            f"(optim.lr={optim.lr:g}, optim.weight_decay={optim.weight_decay:g}): lower them, or "
            "enable optim.clip_grad_norm, then start again or --resume")

    def _clip_gradients(self) -> torch.Tensor:
        clip = self.config.optim.clip_grad_norm
        if clip is None:
            grads = [p.grad for p in self._params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        else:
            norm = torch.nn.utils.clip_grad_norm_(self._params, clip)
        if hasattr(norm, "full_tensor"):  # FSDP: the norm is a DTensor over the shards
            norm = norm.full_tensor()
        return norm.detach().float().cpu()

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.config.run.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.ctx.device.type, dtype=dtype)

    # -- epochs, evaluation, checkpoints ----------------------------------------------------

    def _end_epoch(self, metrics_log: MetricsLogger, result: TrainResult) -> None:
        run = self.config.run
        finished_epoch = self.epoch
        self.epoch += 1
        self.micro_batch = 0
        if run.eval_every_epochs and self.epoch % run.eval_every_epochs == 0:
            scores = self.evaluate()
            if scores:
                metrics_log.log(self.step, finished_epoch, "val", scores)
                key = run.monitor.split("/", 1)[-1]
                if key not in scores:
                    raise ConfigError(f"config option run.monitor={run.monitor!r} is not among the "
                                      f"validation metrics: {', '.join(sorted(scores))}")
                value = scores[key]
                better = (self.best is None or (value < self.best if run.monitor_mode == "min"
                                                else value > self.best))
                if math.isfinite(value) and better:
                    self.best = value
                    result.best_checkpoint = self._save(best=True, metrics=scores)

    def _state(self) -> dict[str, Any]:
        # Collectives first (FSDP gathers; RNG states of every rank), then rank 0 writes.
        rng = dist_utils.all_gather_objects(capture_rng_state(), self.ctx)
        return {
            "model": dist_utils.model_state_dict(self.model),
            "optimizer": dist_utils.optimizer_state_dict(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "position": {"epoch": self.epoch, "micro_batch": self.micro_batch},
            "step": self.step,
            "best": self.best,
            "bad_streak": self.bad_streak,
            "log_window": self.window.state_dict(),
            "world_size": self.ctx.world_size,
            "global_batch_size": self.global_batch_size,
            "task": self.config.task,
            "config": to_dict(self.config),
        }

    def _save(self, best: bool = False, metrics: Mapping[str, float] | None = None) -> Path | None:
        state = self._state()
        path = self.checkpoints.save(state, self.step, self.epoch, metrics=dict(metrics or {}),
                                     best=best)
        dist_utils.barrier(self.ctx)
        return path

    def _resume(self) -> None:
        state, path = self.checkpoints.load_latest(map_location="cpu", validate=_finite_model)
        if state.get("global_batch_size") != self.global_batch_size:
            raise ConfigError(
                f"checkpoint {path} was trained with a global batch of "
                f"{state.get('global_batch_size')} windows, this run has {self.global_batch_size}; "
                "resume with the same data.batch_size x run.accumulation_steps x processes")
        dist_utils.load_model_state_dict(self.model, state["model"])
        dist_utils.load_optimizer_state_dict(self.model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["position"]["epoch"])
        self.micro_batch = int(state["position"]["micro_batch"])
        self.best = state["best"]
        self.bad_streak = int(state["bad_streak"])
        self.window = _LogWindow.from_state_dict(state["log_window"])
        rng_states = state["rng"]
        if len(rng_states) == self.ctx.world_size:
            restore_rng_state(rng_states[self.ctx.rank])
        else:
            # Another number of processes: the data order is unchanged (it depends on the global
            # batch only), but per-rank random streams (masks) cannot continue; reseed them.
            logger.warning("resuming %d-process checkpoint on %d processes: random streams reseeded",
                           len(rng_states), self.ctx.world_size)
            seed_everything(self.config.run.seed + self.ctx.rank + 7919 * self.step)
        logger.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    def _loader(self, batches: list[list[int]], dataset: Dataset | None = None) -> DataLoader:
        workers = self.config.data.num_workers
        # A private generator: creating the loader must not draw from the global torch RNG, or a
        # resumed run (which creates it mid-epoch) would shift the objective's random stream.
        return DataLoader(dataset if dataset is not None else self.train_data, batch_sampler=batches,
                          collate_fn=self.collate_fn, num_workers=workers,
                          pin_memory=self.ctx.device.type == "cuda",
                          persistent_workers=False,
                          generator=torch.Generator().manual_seed(self.config.run.seed + self.epoch),
                          prefetch_factor=2 if workers else None)


def mean_validation_metrics(objective: nn.Module, batches: Iterable[dict[str, Any]],
                            ctx: DistributedContext) -> dict[str, float]:
    """Default validation hook: the objective's loss and metrics, averaged over windows and
    reduced over ranks (weighted by batch size)."""
    device = ctx.device
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), dtype=torch.float64, device=device)
    for batch in batches:
        batch = _to_device(batch, device)
        output = objective(batch)
        n = _batch_len(batch)
        count += n
        values = {"loss": output.loss, **output.metrics}
        for name, value in values.items():
            value = torch.as_tensor(value, dtype=torch.float64).detach().to(device)
            sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64, device=device)) + value * n
    # Gathered as objects: a rank may have had no validation batch, hence no metric names.
    shares = dist_utils.all_gather_objects(
        (float(count), {name: float(value) for name, value in sums.items()}), ctx)
    total = sum(share_count for share_count, _ in shares)
    if total == 0:
        return {}
    combined: dict[str, float] = {}
    for _, share in shares:
        for name, value in share.items():
            combined[name] = combined.get(name, 0.0) + value
    return {name: value / total for name, value in sorted(combined.items())}


class _LogWindow:
    """Running sums between two log lines (part of the checkpoint, for exact resumed logs)."""

    def __init__(self, last_rate: float = 0.0) -> None:
        self.loss = 0.0
        self.metrics: dict[str, float] = {}
        self.grad_norm = 0.0
        self.good_steps = 0
        self.samples = 0
        self.seconds = 0.0
        self.last_rate = last_rate

    def add(self, loss: float, metrics: dict[str, float], grad_norm: float, samples: int,
            seconds: float) -> None:
        self.loss += loss
        for name, value in metrics.items():
            self.metrics[name] = self.metrics.get(name, 0.0) + value
        self.grad_norm += grad_norm
        self.good_steps += 1
        self.add_skipped(samples, seconds)

    def add_skipped(self, samples: int, seconds: float) -> None:
        self.samples += samples
        self.seconds += seconds
        if seconds > 0:
            self.last_rate = samples / seconds

    def summary(self) -> dict[str, float]:
        n = max(self.good_steps, 1)
        out = {"loss": self.loss / n if self.good_steps else float("nan"),
               "grad_norm": self.grad_norm / n if self.good_steps else float("nan"),
               "samples_per_s": self.samples / self.seconds if self.seconds > 0 else 0.0}
        out.update({name: value / n for name, value in self.metrics.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "metrics": dict(self.metrics), "grad_norm": self.grad_norm,
                "good_steps": self.good_steps, "samples": self.samples, "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> _LogWindow:
        window = cls()
        window.loss = state["loss"]
        window.metrics = dict(state["metrics"])
        window.grad_norm = state["grad_norm"]
        window.good_steps = state["good_steps"]
        window.samples = state["samples"]
        window.seconds = state["seconds"]
        return window


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True if every floating-point element of ``tensors`` is finite.

    One fused 2-norm per tensor and one sync; only when a norm is not finite (NaN/Inf, or a
    finite tensor whose squares overflow) are the elements themselves checked. Sharded (FSDP2
    DTensor) tensors are checked on their local shard; combine ranks with
    :func:`~neurofm.engine.distributed.all_ranks_true`.
    """
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    local = [t.detach() for t in local if t.is_floating_point() and t.numel()]
    if not local or bool(torch.isfinite(torch.stack(torch._foreach_norm(local, 2))).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in local)


def _finite_model(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose model weights are NaN/Inf (one written by an older neurofm)."""
    model = state.get("model")
    if not isinstance(model, dict) or not all_finite(model.values()):
        raise CheckpointError(f"checkpoint {path} holds NaN/Inf model weights; it cannot be "
                              "resumed from")


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {key: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor)
            else value for key, value in batch.items()}


def _batch_len(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train")
