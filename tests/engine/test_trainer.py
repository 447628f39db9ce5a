"""The training loop: accumulation, exact resume, evaluation and best checkpoint, logs."""

from __future__ import annotations

import pytest
import torch
from toy_training import ToyObjective, ToyWindows, toy_config

from neurofm.engine.checkpointing import load_checkpoint
from neurofm.engine.metrics_log import read_metrics
from neurofm.engine.trainer import Trainer


def _train(run_dir, config, resume=False, val=True, init_seed=0, **objective_options):
    torch.manual_seed(init_seed)
    objective = ToyObjective(**objective_options)
    trainer = Trainer(objective, config, run_dir, ToyWindows(64), ToyWindows(16, seed=1) if val else None)
    return trainer, trainer.fit(resume=resume)


def test_loss_falls_and_run_folder_holds_config_metrics_and_checkpoints(tmp_path):
    trainer, result = _train(tmp_path, toy_config())
    assert result.step == trainer.total_steps == 3 * 64 // 8
    assert sum(result.losses[-4:]) < sum(result.losses[:4])
    assert (tmp_path / "config.yaml").is_file()
    losses = read_metrics(tmp_path / "metrics.csv", split="train", name="loss")
    assert [step for step, *_ in losses] == list(range(1, result.step + 1))
    assert read_metrics(tmp_path / "metrics.csv", split="val", name="loss")
    assert result.best_checkpoint is not None and result.best_checkpoint.name == "best.pt"


def test_gradient_accumulation_equals_a_larger_batch(tmp_path):
    no_dropout = dict(dropout=0.0)
    run = {"max_steps": 5}
    _, big = _train(tmp_path / "big", toy_config(data={"batch_size": 16}, run=run),
                    **no_dropout, val=False)
    _, accumulated = _train(tmp_path / "acc", toy_config(data={"batch_size": 8},
                                                         run={**run, "accumulation_steps": 2}),
                            **no_dropout, val=False)
    assert accumulated.losses == pytest.approx(big.losses, rel=1e-5, abs=1e-6)
    big_weights = load_checkpoint(big.last_checkpoint)["model"]
    acc_weights = load_checkpoint(accumulated.last_checkpoint)["model"]
    for name, value in big_weights.items():
        if name == "calls_seen":  # counts forward calls, which accumulation doubles
            continue
        torch.testing.assert_close(acc_weights[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("checkpoint_every", "crash_at"), [(5, 13), (0, 17)])
def test_killed_run_resumes_to_the_same_losses_and_weights(tmp_path, checkpoint_every, crash_at):
    config = toy_config(run={"checkpoint_every_steps": checkpoint_every})
    _, straight = _train(tmp_path / "straight", config)

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "killed", config, crash_at=crash_at)
    # As a fresh process would: a new model and trainer, then resume from the run folder.
    _, resumed = _train(tmp_path / "killed", config, resume=True, init_seed=123)

    straight_curve = read_metrics(tmp_path / "straight" / "metrics.csv", split="train", name="loss")
    resumed_curve = read_metrics(tmp_path / "killed" / "metrics.csv", split="train", name="loss")
    assert resumed_curve == straight_curve
    assert resumed.losses == straight.losses[-len(resumed.losses):]
    final_straight = load_checkpoint(straight.last_checkpoint)
    final_resumed = load_checkpoint(resumed.last_checkpoint)
    assert final_resumed["step"] == final_straight["step"]
    for name, value in final_straight["model"].items():
        assert torch.equal(final_resumed["model"][name], value), name
    assert read_metrics(tmp_path / "killed" / "metrics.csv", split="val") == \
        read_metrics(tmp_path / "straight" / "metrics.csv", split="val")


def test_keep_last_k_periodic_checkpoints_and_one_best(tmp_path):
    _train(tmp_path, toy_config(run={"checkpoint_every_steps": 2, "keep_last": 2}))
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "step-00000022.pt", "step-00000024.pt"]


def test_best_checkpoint_holds_the_best_monitored_score(tmp_path):
    _trainer, result = _train(tmp_path, toy_config())
    val = read_metrics(tmp_path / "metrics.csv", split="val", name="loss")
    best = min(value for *_, value in val)
    assert result.best == pytest.approx(best)
    best_state = load_checkpoint(result.best_checkpoint)
    best_step = next(step for step, _, _, value in val if value == best)
    assert best_state["step"] == best_step


def test_max_steps_overrides_epochs_and_shortens_the_schedule(tmp_path):
    trainer, result = _train(tmp_path, toy_config(run={"max_steps": 7}), val=False)
    assert result.step == 7 and trainer.total_steps == 7
    lrs = read_metrics(tmp_path / "metrics.csv", split="train", name="lr")
    assert lrs[0][3] == 0.0 and lrs[-1][3] == pytest.approx(1e-4)


def test_bf16_autocast_on_cpu_trains_with_finite_falling_loss(tmp_path):
    _, result = _train(tmp_path, toy_config(run={"precision": "bf16"}), val=False)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert sum(result.losses[-4:]) < sum(result.losses[:4])


def test_too_little_data_for_one_step_is_a_config_error(tmp_path):
    from neurofm.errors import ConfigError

    with pytest.raises(ConfigError, match="fewer than one optimizer step"):
        Trainer(ToyObjective(), toy_config(data={"batch_size": 128}), tmp_path, ToyWindows(64))


@pytest.mark.slow
def test_compiled_objective_trains_like_the_eager_one(tmp_path):
    # torch.compile needs a C++ toolchain and about a minute on two cores: excluded by default.
    _, eager = _train(tmp_path / "eager", toy_config(run={"max_steps": 4}), val=False, dropout=0.0)
    _, compiled = _train(tmp_path / "compiled", toy_config(run={"max_steps": 4, "compile": True}),
                         val=False, dropout=0.0)
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-5)
    state = load_checkpoint(compiled.last_checkpoint)["model"]
    assert not any(name.startswith("_orig_mod") for name in state)
