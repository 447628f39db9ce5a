"""AdamW parameter groups, layer-wise lr decay, warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from toy_training import ToyObjective

from neurofm.engine.config import OptimConfig
from neurofm.engine.optim import (
    build_optimizer,
    build_scheduler,
    excluded_from_weight_decay,
    param_groups,
    scaled_learning_rates,
    warmup_cosine_factor,
)


def test_no_weight_decay_on_norms_biases_tokens_and_embeddings():
    model = ToyObjective()
    excluded = excluded_from_weight_decay(model)
    assert excluded == {"cls_token", "channel_embed.weight", "proj.bias", "norm.weight",
                        "norm.bias", "head.bias"}
    groups = param_groups(model, weight_decay=0.05)
    by_decay = {g["weight_decay"]: set(g["param_names"]) for g in groups}
    assert by_decay[0.05] == {"proj.weight", "head.weight"}
    assert by_decay[0.0] == excluded


def test_frozen_parameters_are_left_out():
    model = ToyObjective()
    model.head.requires_grad_(False)
    names = {n for g in param_groups(model, 0.05) for n in g["param_names"]}
    assert "head.weight" not in names and "head.bias" not in names


def test_layer_decay_scales_lr_per_layer_id():
    model = ToyObjective()
    layer_of = {"cls_token": 0, "channel_embed": 0, "proj": 1, "norm": 2, "head": 3}
    groups = param_groups(model, 0.05, layer_id=lambda name: layer_of[name.split(".")[0]],
                          num_layers=2, layer_decay=0.5)
    scales = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    assert scales["cls_token"] == 0.5 ** 3
    assert scales["proj.weight"] == 0.5 ** 2
    assert scales["head.weight"] == 1.0
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.5), lr=1e-3,
                                layer_id=lambda name: layer_of[name.split(".")[0]], num_layers=2)
    lrs = {n: g["lr"] for g in optimizer.param_groups for n in g["param_names"]}
    assert lrs["proj.weight"] == pytest.approx(1e-3 * 0.25)


def test_optimizer_uses_recipe_betas_and_fused_adamw_on_cpu():
    optimizer = build_optimizer(ToyObjective(), OptimConfig(betas=(0.9, 0.98), eps=1e-8), lr=5e-4)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.98) for g in optimizer.param_groups)
    assert optimizer.defaults["fused"] is True


def test_schedule_is_zero_at_start_peak_at_warmup_end_and_min_at_last_step():
    assert warmup_cosine_factor(0, 100, 10, 0.02) == 0.0
    assert warmup_cosine_factor(5, 100, 10, 0.02) == pytest.approx(0.5)
    assert warmup_cosine_factor(10, 100, 10, 0.02) == pytest.approx(1.0)
    assert warmup_cosine_factor(99, 100, 10, 0.02) == pytest.approx(0.02)
    middle = 10 + (99 - 10) / 2
    assert warmup_cosine_factor(int(middle), 100, 10, 0.0) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * (int(middle) - 10) / 89)))


def test_scheduler_drives_every_group_with_its_lr_scale():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight], "lr": 1.0},
                                   {"params": [model.bias], "lr": 0.5}])
    scheduler = build_scheduler(optimizer, total_steps=21, warmup_steps=4, min_ratio=0.1)
    lrs = []
    for _ in range(21):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == [0.0, 0.0]
    assert lrs[4] == pytest.approx([1.0, 0.5])
    assert lrs[20] == pytest.approx([0.1, 0.05])
    assert max(lr[0] for lr in lrs) == pytest.approx(1.0)


def test_linear_batch_scaling_of_lr():
    config = OptimConfig(lr=5e-5, min_lr=1e-5, lr_batch_scaling="linear", reference_batch_size=128)
    assert scaled_learning_rates(config, 1024) == pytest.approx((4e-4, 8e-5))
    config.lr_batch_scaling = "none"
    assert scaled_learning_rates(config, 1024) == (5e-5, 1e-5)
