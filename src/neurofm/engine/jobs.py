"""Self-supervised training jobs: corpus -> windows -> objective -> :class:`Trainer` -> model.

Each job is a thin assembly over shared parts, the way a torchtune recipe is: the corpus and its
windows (:mod:`neurofm.data`), a named model (:mod:`neurofm.models.registry`), an objective
(:mod:`neurofm.objectives`) and the one engine. The CLI commands ``neurofm tokenizer train`` and
``neurofm pretrain`` only parse arguments and call :func:`run_job`.

A run folder holds ``config.yaml`` (resolved), ``metrics.csv``, ``tensorboard/``,
``checkpoints/`` (training state, for ``--resume``), ``split.json`` (which recordings were used
for training and validation), ``pretraining_data.json`` (their ids, subjects and content hashes:
:mod:`neurofm.engine.pretraining_data`) and, at the end, ``model/`` (the trained network in
neurofm's safetensors format, loadable with :func:`neurofm.from_pretrained`,
its ``config.json`` carrying the same record).
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from neurofm.atomic import atomic_write_json
from neurofm.data.batching import ShapeGroupedBatchSampler, collate_windows
from neurofm.data.corpus import Corpus
from neurofm.data.splits import group_of, group_split
from neurofm.data.windows import WindowDataset
from neurofm.engine import distributed
from neurofm.engine.checkpointing import CheckpointManager
from neurofm.engine.config import PretrainConfig, TrainConfig
from neurofm.engine.data_order import sampler_batches
from neurofm.engine.pretraining_data import (
    CONFIG_KEY,
    Inherited,
    PretrainingRecord,
    record_of_model_dir,
    record_of_run,
    write_record,
)
from neurofm.engine.trainer import Trainer, TrainResult, all_finite, seed_everything
from neurofm.errors import CheckpointError, ConfigError, CorpusError, TrainingError
from neurofm.models.registry import list_models
from neurofm.objectives.registry import BuildContext, get_objective, objective_name

logger = logging.getLogger(__name__)

# LaBraM's networks and tokenizer take signals in 100 uV at 200 Hz (METHODS.md section 1).
LABRAM_UNIT, LABRAM_SFREQ = "100uV", 200.0


class WindowSplit:
    """Training and validation windows of a corpus, split by subject.

    Recordings without a subject id only ever train (their subject is unknown, so they could be
    a validation subject's); when no recording has one, validation takes whole recordings instead
    (logged: it may then share subjects with training).

    Attributes: ``train``, ``val`` (None when ``val_fraction`` is 0 or there is a single group),
    ``train_ids``, ``val_ids`` (recording ids), ``corpus``.
    """

    def __init__(self, corpus: Corpus, window_seconds: float, stride_seconds: float,
                 val_fraction: float, seed: int, exclude: Sequence[str] = ()) -> None:
        self.corpus = corpus
        self.excluded = _excluded_ids(corpus, exclude)
        entries = [entry for entry in corpus if entry.id not in self.excluded]
        if not entries:
            raise ConfigError(f"data.exclude_recordings leaves no recording of corpus {corpus.path}")
        # Recordings that may validate; the anonymous ones only train.
        can_validate = [entry for entry in entries if entry.subject is not None]
        anonymous = sorted(entry.id for entry in entries if entry.subject is None)
        by = "subject"
        if not can_validate:
            can_validate, anonymous, by = entries, [], "recording"
            if val_fraction > 0:
                logger.warning("no recording of corpus %s has a subject id, so validation takes "
                               "whole recordings and may share subjects with training", corpus.path)
        elif anonymous:
            logger.warning("%d recording(s) without a subject id (e.g. %r) train but never "
                           "validate", len(anonymous), anonymous[0])
        if val_fraction > 0 and len({group_of(entry, by) for entry in can_validate}) > 1:
            split = group_split(can_validate, by=by, val_fraction=val_fraction, test_fraction=0.0,
                                seed=seed, name="pretraining")
            self.train_ids, self.val_ids = sorted([*split.train, *anonymous]), list(split.val)
        else:
            self.train_ids, self.val_ids = sorted(entry.id for entry in entries), []
        self.train = WindowDataset(corpus, window_seconds, stride_seconds, recording_ids=self.train_ids)
        # Validation windows do not overlap, and their indices follow the training ones so the
        # token-target cache (keyed by window index) never confuses the two.
        self.val = (_OffsetIndex(WindowDataset(corpus, window_seconds, recording_ids=self.val_ids),
                                 offset=len(self.train)) if self.val_ids else None)

    def describe(self) -> dict[str, Any]:
        """What ``split.json`` records."""
        return {"corpus": str(self.corpus.path), "train": self.train_ids, "val": self.val_ids,
                "excluded": sorted(self.excluded), "train_windows": len(self.train),
                "val_windows": len(self.val or [])}


def _excluded_ids(corpus: Corpus, patterns: Sequence[str]) -> set[str]:
    excluded: set[str] = set()
    for pattern in patterns:
        matched = {rid for rid in corpus.ids if fnmatch.fnmatchcase(rid, pattern)}
        if not matched:
            # A pattern that matches nothing is almost always a typo that would leak test data.
            raise ConfigError(f"data.exclude_recordings pattern {pattern!r} matches no recording of "
                              f"corpus {corpus.path}; check the ids with `neurofm info`")
        excluded |= matched
    return excluded


class _OffsetIndex(Dataset):
    """A dataset whose items' ``"index"`` is shifted by ``offset``."""

    def __init__(self, dataset: WindowDataset, offset: int) -> None:
        self.dataset = dataset
        self.offset = offset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        return {**item, "index": item["index"] + self.offset}

    def channel_set_ids(self):
        return self.dataset.channel_set_ids()


def build_objective(config: TrainConfig, window_samples: int, run_dir: Path,
                    ctx: distributed.DistributedContext) -> tuple[nn.Module, nn.Module]:
    """The objective of ``config`` (looked up by name, :mod:`neurofm.objectives.registry`) and
    the network it trains (what the job exports).

    Raises :class:`ConfigError` when the model does not fit the objective and
    :class:`CheckpointError` when a checkpoint it needs (a tokenizer) cannot be used.
    """
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.run.precision)
    spec = get_objective(objective_name(config))
    return spec.build(config, BuildContext(window_samples, run_dir, ctx, autocast_dtype))


def run_job(config: TrainConfig, corpus_dir: str | Path, run_dir: str | Path,
            resume: bool = False) -> TrainResult:
    """Train ``config`` (tokenizer or pretraining) on the corpus at ``corpus_dir`` into ``run_dir``.

    Works in one process or under ``torchrun`` (DDP/FSDP, rank 0 writing). A fresh run refuses a
    ``run_dir`` that already holds checkpoints; ``resume`` continues from the newest usable one.
    The trained network is exported to ``run_dir/model`` (the best validation checkpoint's
    weights when validation ran, else the final weights).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file, not a run folder; choose a "
                          "folder path (it is created)")
    checkpoints = CheckpointManager(run_dir / "checkpoints")
    if not resume and checkpoints.periodic():
        raise ConfigError(f"{run_dir} already holds checkpoints; pass --resume to continue that "
                          "run, or choose another --out folder")
    if config.model not in list_models():  # before the corpus is read or anything is written
        raise ConfigError(f"unknown model {config.model!r}; known models: "
                          f"{', '.join(list_models())}")
    get_objective(objective_name(config))
    ctx = distributed.init_distributed(config.run.device)
    try:
        corpus = Corpus(corpus_dir)
        _check_corpus(config, corpus)
        data = WindowSplit(corpus, config.data.window_seconds, config.data.stride_seconds,
                           config.data.val_fraction, config.run.seed,
                           exclude=config.data.exclude_recordings)
        _verify_arrays(data)
        record = pretraining_record_of(config, data)
        if ctx.is_main:
            atomic_write_json(run_dir / "split.json", data.describe())
            write_record(run_dir, record)
        # The same initial weights on every rank (DDP also broadcasts them from rank 0).
        seed_everything(config.run.seed)
        objective, network = build_objective(config, data.train.window_length, run_dir, ctx)
        sharded = ctx.is_distributed and config.run.distributed == "fsdp"
        export_copy = copy.deepcopy(network) if sharded and ctx.is_main else None
        global_batch = config.data.batch_size * ctx.world_size
        trainer = Trainer(
            objective, config, run_dir, data.train, data.val, collate_fn=collate_windows,
            train_batches=sampler_batches(ShapeGroupedBatchSampler(
                data.train.channel_set_ids(), global_batch, seed=config.run.seed, drop_last=True,
                num_replicas=1, rank=0)),
            val_batches=(list(ShapeGroupedBatchSampler(
                data.val.channel_set_ids(), config.data.batch_size, shuffle=False,
                num_replicas=1, rank=0)) if data.val is not None else None),
            ctx=ctx,
        )
        result = trainer.fit(resume=resume)
        cache = getattr(objective, "token_cache", None)
        if cache is not None:
            cache.save()
        _export(network, export_copy, trainer, result, run_dir, config, ctx, record)
        return result
    finally:
        distributed.shutdown_distributed()


def pretraining_record_of(config: TrainConfig, data: WindowSplit) -> PretrainingRecord:
    """What the job trains on: ``data``'s training and validation recordings, plus (masked-EEG
    modelling) the record of its tokenizer, whose data the student's targets come from."""
    inherited = []
    for role, path in get_objective(objective_name(config)).parents(config):
        inherited.append(Inherited(role, str(Path(path).resolve()), record_of_model_dir(path)))
        if inherited[-1].record is None:
            logger.warning("%s %s has no pretraining record (an older file); the data it was "
                           "trained on stays unknown to the overlap guard", role, path)
    objective = f" --objective {config.objective}" if isinstance(config, PretrainConfig) else ""
    return record_of_run(data.corpus, data.train_ids, data.val_ids,
                         trained_by=f"neurofm {config.task}{objective}", inherited=inherited)


def _export(network: nn.Module, export_copy: nn.Module | None, trainer: Trainer,
            result: TrainResult, run_dir: Path, config: TrainConfig,
            ctx: distributed.DistributedContext, record: PretrainingRecord) -> None:
    """Write the trained network (best validation weights when validation ran) to run_dir/model,
    its ``config.json`` carrying the pretraining ``record``.

    Called on every rank: under FSDP, gathering the final weights is a collective. Sharded
    parameters cannot be saved as they are, so ``export_copy`` (an unsharded copy taken before
    sharding) receives the weights instead.
    """
    from neurofm.engine.checkpointing import load_checkpoint
    from neurofm.models.saved import save_pretrained

    prefix = _prefix_of(trainer.module, network)
    # trainer.best is reduced over ranks, so every rank takes the same branch.
    use_best = trainer.best is not None
    state = None if use_best else distributed.model_state_dict(trainer.model)
    if not ctx.is_main:
        return
    step = result.step
    if use_best:
        best = load_checkpoint(trainer.checkpoints.best_path())
        state, step = best["model"], int(best.get("step", step))
    assert state is not None  # the final weights, or the best checkpoint's
    if not all_finite(state.values()):
        raise TrainingError(f"the trained weights of run {run_dir} are NaN/Inf; nothing was "
                            "exported to model/. Lower optim.lr or optim.weight_decay and train again")
    target = export_copy if export_copy is not None else network
    target.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    source = f"best ({config.run.monitor})" if use_best else "final"
    try:
        save_pretrained(target, run_dir / "model", model_name=config.model,
                        extra={"trained_by": f"neurofm {config.task}", "weights": source,
                               "step": step, CONFIG_KEY: record.to_dict()})
    except CheckpointError as error:
        logger.warning("the trained %s stays in the training checkpoints only: %s",
                       type(target).__name__, error)


def _prefix_of(objective: nn.Module, network: nn.Module) -> str:
    for name, module in objective.named_modules():
        if module is network:
            return f"{name}." if name else ""
    raise ValueError("the network is not part of the objective")


def _verify_arrays(data: WindowSplit) -> None:
    """Check the arrays of every recording the run reads against their sha256 before training
    (the data loader's workers inherit the result, so nothing is hashed twice).

    Raises :class:`CorpusError` naming each damaged array and saying to re-run ``neurofm prepare``.
    """
    problems = data.corpus.verify([*data.train_ids, *data.val_ids])
    if problems:
        listed = "\n  ".join(problem.message for problem in problems)
        raise CorpusError(f"corpus {data.corpus.path}: {len(problems)} recording(s) are damaged; "
                          f"nothing was trained:\n  {listed}")


def _check_corpus(config: TrainConfig, corpus: Corpus) -> None:
    if not get_objective(objective_name(config)).labram_input:
        return
    for entry in corpus:
        if entry.unit != LABRAM_UNIT or entry.sfreq != LABRAM_SFREQ:
            raise ConfigError(
                f"corpus {corpus.path}: recording {entry.id} is in {entry.unit} at {entry.sfreq:g} Hz, "
                f"but LaBraM's tokenizer and masked modelling take {LABRAM_UNIT} at "
                f"{LABRAM_SFREQ:g} Hz; prepare the corpus with the labram preprocessing recipe")
        if entry.vocabulary_indices is None:
            raise ConfigError(f"corpus {corpus.path}: recording {entry.id} has no channel mapping to "
                              "the LaBraM vocabulary (EMG?); LaBraM objectives need EEG channels")
