"""Typed training configs: recipe defaults, YAML, dotted overrides, validation, round trip."""

from __future__ import annotations

import pytest

from neurofm.engine.config import (
    FinetuneConfig,
    PretrainConfig,
    TokenizerTrainConfig,
    load_config,
    load_saved_config,
    parse_overrides,
    save_config,
)
from neurofm.errors import ConfigError


def test_mem_recipe_defaults_follow_methods_section_4():
    config = load_config(PretrainConfig, overrides=["objective=mem", "tokenizer=tok.pt"])
    assert config.objective == "mem"
    assert config.model == "labram_base_mem"
    assert config.optim.betas == (0.9, 0.98)
    assert config.optim.eps == 1e-8
    assert config.optim.weight_decay == 0.05
    assert config.optim.clip_grad_norm == 3.0
    assert (config.optim.lr, config.optim.min_lr) == (5e-4, 1e-5)
    assert config.optim.lr_batch_scaling == "none"


def test_fip_recipe_defaults_follow_methods_section_6_4():
    config = load_config(PretrainConfig, base={"objective": "fip"})
    assert config.optim.betas == (0.9, 0.999)
    assert config.optim.weight_decay == 0.01
    assert config.optim.clip_grad_norm == 1.0
    assert config.optim.lr_batch_scaling == "linear" and config.optim.reference_batch_size == 256
    assert config.symmetric_masking is False


def test_tokenizer_and_finetune_recipe_defaults():
    tokenizer = load_config(TokenizerTrainConfig)
    assert tokenizer.optim.betas == (0.9, 0.99) and tokenizer.optim.weight_decay == 1e-4
    assert tokenizer.optim.clip_grad_norm is None
    assert tokenizer.data.stride_seconds == 1.0
    finetune = load_config(FinetuneConfig)
    assert finetune.optim.betas == (0.9, 0.999) and finetune.optim.weight_decay == 0.05
    assert finetune.optim.layer_decay == 0.65


def test_tokenizer_restarts_dead_codes_by_default_and_validates_the_threshold():
    tokenizer = load_config(TokenizerTrainConfig)
    assert (tokenizer.restart_dead_every, tokenizer.dead_code_fraction) == (10, 0.4)
    assert load_config(TokenizerTrainConfig, overrides=["restart_dead_every=0"]).restart_dead_every == 0
    with pytest.raises(ConfigError, match="dead_code_fraction"):
        load_config(TokenizerTrainConfig, overrides=["dead_code_fraction=1.5"])


def test_named_model_adds_its_own_defaults_under_explicit_values():
    huge = load_config(PretrainConfig, base={"objective": "mem", "tokenizer": "t",
                                             "model": "labram_huge_mem"})
    assert huge.run.distributed == "fsdp"
    large = load_config(FinetuneConfig, base={"model": "labram_large"})
    assert (large.optim.epochs, large.optim.layer_decay) == (30, 0.8)
    explicit = load_config(FinetuneConfig, base={"model": "labram_large"},
                           overrides=["optim.layer_decay=0.9"])
    assert explicit.optim.layer_decay == 0.9


def test_yaml_then_flags_then_overrides_in_that_order(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("objective: fip\noptim:\n  lr: 0.002\n  epochs: 7\ndata:\n  batch_size: 16\n")
    config = load_config(PretrainConfig, path, overrides=["optim.lr=3e-4", "optim.betas=0.8,0.9"],
                         base={"model": "neurobert_tiny"})
    assert config.objective == "fip"
    assert config.optim.lr == 3e-4          # override beats the file
    assert config.optim.epochs == 7         # file beats the recipe
    assert config.optim.weight_decay == 0.01  # recipe fills what nobody set
    assert config.optim.betas == (0.8, 0.9)
    assert config.model == "neurobert_tiny"
    assert config.data.batch_size == 16


def test_override_values_are_coerced_to_field_types():
    config = load_config(PretrainConfig, overrides=[
        "objective=fip", "run.max_steps=20", "run.compile=true", "optim.clip_grad_norm=null",
        "model_overrides={depth: 2}", "run.seed=1e3", "data.exclude_recordings=a/*,b"])
    assert config.data.exclude_recordings == ["a/*", "b"]
    assert config.run.max_steps == 20 and config.run.compile is True
    assert config.optim.clip_grad_norm is None
    assert config.model_overrides == {"depth": 2}
    assert config.run.seed == 1000


def test_saved_config_round_trips(tmp_path):
    config = load_config(PretrainConfig, overrides=["objective=mae-time", "optim.lr=1e-4",
                                                     "run.precision=bf16"])
    save_config(config, tmp_path / "config.yaml")
    assert load_saved_config(PretrainConfig, tmp_path / "config.yaml") == config
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("task: pretrain") and "weight_decay: 0.01" in text


def test_saved_config_of_another_task_is_refused(tmp_path):
    save_config(load_config(TokenizerTrainConfig), tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="holds a 'tokenizer' config"):
        load_saved_config(PretrainConfig, tmp_path / "config.yaml")


@pytest.mark.parametrize(("overrides", "message"), [
    (["objective=mem"], "tokenizer is required"),
    (["objective=fip", "tokenizer=tok.pt"], "only used by --objective mem"),
    (["objective=fip", "symmetric_masking=true"], "mem only"),
    (["objective=mem", "tokenizer=t.pt", "loss_on=all"], "fip and mae-time only"),
    (["objective=mae-time", "fip_spectrum=cartesian"], "fip only"),
    (["objective=fip", "fip_spectrum=spherical"], "must be one of"),
    (["objective=fip", "optim.lrr=1"], "did you mean optim.lr"),
    (["objective=fip", "optim.min_lr=1"], "optim.min_lr"),
    (["objective=fip", "optim.warmup_epochs=500"], "optim.warmup_epochs"),
    (["objective=fip", "optim.betas=0.9"], "needs 2 values"),
    (["objective=fip", "run.precision=fp8"], "must be one of"),
    (["objective=fip", "run.precision=fp16", "run.device=cpu"], "fp16 needs a CUDA"),
    (["objective=fip", "run.accumulation_steps=0"], "run.accumulation_steps"),
    (["objective=fip", "data.batch_size=many"], "must be an integer"),
    (["objective=fip", "mask_ratio=1.0"], "mask_ratio"),
    (["objective=xyz"], "unknown objective"),
    (["tokenizer=t.pt"], "no pretraining objective chosen"),
    (["objective=fip", "optim.lr"], "key=value"),
])
def test_inconsistent_options_raise_config_error_naming_the_option(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, overrides=overrides)


def test_missing_or_malformed_yaml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(PretrainConfig, bad)


def test_parse_overrides_builds_nested_mapping():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e=[1, 2]"]) == {"a": {"b": {"c": 1}, "d": "x"},
                                                                  "e": [1, 2]}
