"""AdamW parameter groups, layer-wise lr decay, and the warm-up + cosine schedule.

Weight decay follows the official recipes: none on biases, on any 1-D parameter (norm weights,
layer-scale gammas), on embedding tables and on the learned tokens and position tables
(``cls_token``, ``pos_embed``, ``time_embed``, ``mask_token``...). Layer-wise lr decay
(fine-tuning) multiplies a group's lr by ``decay ** (num_layers + 1 - layer_id)``, with the layer
id given by a callable the model family supplies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from neurofm.engine.config import OptimConfig

# Learned tokens and position/time tables: parameters, not layers, so matched by name.
NO_DECAY_NAME_SUFFIXES: tuple[str, ...] = (
    "cls_token", "pos_embed", "time_embed", "mask_token", "channel_embed", "spatial_embed",
)


def excluded_from_weight_decay(model: nn.Module) -> set[str]:
    """Names of the parameters of ``model`` that get no weight decay (see module docstring)."""
    embedding_weights = {
        f"{module_name}.weight" if module_name else "weight"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Embedding)
    }
    excluded = set()
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if (param.ndim <= 1 or leaf == "bias" or name in embedding_weights
                or leaf in NO_DECAY_NAME_SUFFIXES):
            excluded.add(name)
    return excluded


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    layer_decay: float | None = None,
) -> list[dict]:
    """AdamW parameter groups: decay vs no decay, optionally split per layer for lr decay.

    Each group holds ``params``, ``weight_decay``, ``lr_scale`` (multiplied into the scheduled
    lr; 1 without layer decay) and ``param_names`` (for inspection and tests). With
    ``layer_decay``, ``layer_id(name)`` maps a parameter name to 0..num_layers+1 and the group's
    ``lr_scale = layer_decay ** (num_layers + 1 - id)`` (official LaBraM/BEiT convention).
    Frozen parameters (``requires_grad`` False) are left out.
    """
    if layer_decay is not None and (layer_id is None or num_layers is None):
        raise ValueError("layer_decay needs both layer_id and num_layers")
    excluded = excluded_from_weight_decay(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = name not in excluded
        # layer_id and num_layers are set whenever layer_decay is (checked above).
        layer = layer_id(name) if layer_decay is not None and layer_id is not None else 0
        key = (layer, decay)
        if key not in groups:
            scale = (1.0 if layer_decay is None or num_layers is None
                     else layer_decay ** (num_layers + 1 - layer))
            groups[key] = {"params": [], "param_names": [], "lr_scale": scale,
                           "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


def scaled_learning_rates(config: OptimConfig, global_batch_size: int) -> tuple[float, float]:
    """Peak and minimum lr for ``global_batch_size`` samples per optimizer step.

    With ``lr_batch_scaling="linear"`` both scale by ``global_batch_size / reference_batch_size``.
    """
    if config.lr_batch_scaling == "linear":
        factor = global_batch_size / config.reference_batch_size
        return config.lr * factor, config.min_lr * factor
    return config.lr, config.min_lr


def build_optimizer(
    model: nn.Module,
    config: OptimConfig,
    lr: float,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with the config's betas, eps and weight decay.

    ``lr`` is the peak learning rate (after batch scaling); each group starts at
    ``lr * lr_scale`` and the scheduler multiplies that by the schedule factor. The fused
    implementation is used when every parameter lives on a device that supports it (CPU and
    CUDA in torch >= 2.4), the foreach one otherwise.
    """
    groups = param_groups(model, config.weight_decay, layer_id=layer_id, num_layers=num_layers,
                          layer_decay=config.layer_decay)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and type(p.data) is torch.Tensor  # sharded (DTensor) parameters take the foreach path
        for p in params
    )
    return torch.optim.AdamW(groups, lr=lr, betas=config.betas, eps=config.eps,
                             weight_decay=config.weight_decay,
                             fused=True if fused else None, foreach=None if fused else True)


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Schedule factor at optimizer ``step`` (0-based): lr(step) = peak * factor.

    Linear from 0 at step 0 to 1 at ``warmup_steps``, then a half cosine from 1 to ``min_ratio``
    (= min_lr / peak lr), reached at the last step ``total_steps - 1``.
    """
    if step < warmup_steps:
        return step / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float
) -> LambdaLR:
    """A :class:`LambdaLR` applying :func:`warmup_cosine_factor`; call ``step()`` after each
    optimizer step. Its state dict holds only the step count (the factor is a pure function)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must lie in [0, {total_steps}], got {warmup_steps}")
    return LambdaLR(optimizer, _WarmupCosine(total_steps, warmup_steps, min_ratio))


class _WarmupCosine:
    # A class rather than a closure so that LambdaLR.state_dict records its (plain) fields.
    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.total_steps, self.warmup_steps, self.min_ratio)
