"""Data-parallel training on one or many machines: process group, model wrapping, collectives.

Launched by ``torchrun``, each process reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
environment; the backend follows the device (NCCL on CUDA, Gloo on the CPU). Two strategies:

- ``ddp``: :class:`~torch.nn.parallel.DistributedDataParallel`, every rank holds the whole model
  and gradients are averaged (the default; Base and Large);
- ``fsdp``: ``torch.distributed.fsdp.fully_shard`` (FSDP2) on every transformer block and on the
  root, sharding parameters, gradients and optimizer state across ranks (Huge). It runs on the
  CPU with Gloo too, which is how it is tested.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a no-op on one process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from neurofm.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """The device for ``preference`` ("auto", "cpu" or "cuda"): CUDA (this process's local GPU)
    when asked for or available under "auto", the CPU otherwise."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config option run.device=cuda but no CUDA device is available; "
                          "use run.device=cpu or auto")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto", timeout_minutes: float = 30.0
                     ) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    Returns a single-process context when ``WORLD_SIZE`` is unset or 1. The process group is
    initialised once; calling this again returns the context of the existing group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size <= 1:
        return DistributedContext(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=local_rank, device=device, backend=backend)


def shutdown_distributed() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    """Wait until every rank reaches this point."""
    if ctx.is_distributed:
        dist.barrier()


def all_ranks_true(flag: bool, ctx: DistributedContext) -> bool:
    """True only if ``flag`` is True on every rank (so every rank takes the same branch)."""
    if not ctx.is_distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def all_gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """``obj`` from every rank, in rank order (pickled by torch between trusted processes)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def wrap_model(module: nn.Module, ctx: DistributedContext, strategy: str = "ddp") -> nn.Module:
    """Wrap ``module`` (already on ``ctx.device``) for data-parallel training.

    ``ddp`` returns a DistributedDataParallel wrapper (buffers such as the VQ codebook are
    broadcast from rank 0 at every forward, so all ranks see the same codebook); ``fsdp`` shards
    every :class:`~neurofm.models.blocks.Block` and the root in place and returns ``module``.
    Build the optimizer *after* wrapping, from :func:`unwrap_model` of the result.
    """
    if not ctx.is_distributed:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # Some objectives hold parameters that never get a gradient (the LaBraM student's own
        # lm_head during masked modelling); DDP must not wait for them.
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from neurofm.models.blocks import Block

        for sub in module.modules():
            if isinstance(sub, Block):
                fully_shard(sub)
        fully_shard(module)
        return module
    raise ConfigError(f"config option run.distributed must be ddp or fsdp, got {strategy!r}")


def unwrap_model(module: nn.Module) -> nn.Module:
    """The user's module inside a DDP and/or ``torch.compile`` wrapper."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = cast(nn.Module, module._orig_mod)
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def is_sharded(module: nn.Module) -> bool:
    """True if ``module`` was sharded by FSDP2's ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap_model(module), FSDPModule)


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Context for one micro-batch backward: with ``enabled`` False, gradients accumulate
    locally without communication (all micro-batches of an optimizer step but the last)."""
    if enabled:
        yield
        return
    if isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
        return
    from torch.distributed.fsdp import FSDPModule

    inner = unwrap_model(module)
    if isinstance(inner, FSDPModule):  # is_sharded(inner): inner is already unwrapped
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
        return
    yield


def model_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict on the CPU; a collective under FSDP (call on every
    rank; ranks other than 0 get an empty dict)."""
    inner = unwrap_model(module)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True,
                                                                    cpu_offload=True))
        return cast("dict[str, torch.Tensor]", full)  # full_state_dict: plain tensors
    return {key: value.detach().cpu() for key, value in inner.state_dict().items()}


def load_model_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full model state dict (on every rank; a collective under FSDP)."""
    inner = unwrap_model(module)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # The stub's dict[str, ValueType] is invariant, so a dict of tensors does not match it.
        set_model_state_dict(inner, state,  # type: ignore[arg-type]
                             options=StateDictOptions(full_state_dict=True))
        return
    inner.load_state_dict(state)


def optimizer_state_dict(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state dict; a collective under FSDP (call on every rank)."""
    inner = unwrap_model(module)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(inner, optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_optimizer_state_dict(module: nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict[str, Any]) -> None:
    """Load a full optimizer state dict (on every rank; a collective under FSDP)."""
    inner = unwrap_model(module)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(inner, optimizer, state,
                                 options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)
