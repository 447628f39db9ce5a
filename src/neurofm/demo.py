"""The whole job in one call: real EEG in, pretrained vs scratch vs baseline report out.

:func:`run_demo` (the ``neurofm demo`` command) runs every stage of neurofm on the eegmat
recordings of the dataset registry (PhysioNet EEG during mental arithmetic; the local mirror
first, a verified download otherwise), with small models sized for a laptop CPU:

1. ``prepare``: the first subjects of eegmat into the task corpus (LaBraM recipe: 0.1-75 Hz,
   50 Hz notch, 200 Hz, 100 uV units); the task's subject-wise folds; a second corpus, for
   pretraining, without the test subjects of the evaluated folds;
2. ``tokenizer``: a small VQ-NSP tokenizer on the pretraining corpus;
3. ``pretrain_mem``: a small LaBraM by masked-EEG modelling against the tokenizer's codes;
4. ``pretrain_fip``: a small Neuro-BERT by Fourier inversion prediction;
5. ``finetune``: both, pretrained and from scratch, on the eegmat task (rest vs mental
   arithmetic) on each evaluated fold: train subjects train, validation subjects select the epoch,
   held-out test subjects score;
6. ``baseline``: band-power features + logistic regression on the same folds;
7. ``report``: one Markdown + HTML report with plots comparing the five systems.

Every stage goes through the library's own entry points (:func:`prepare_corpus`,
:func:`~neurofm.engine.jobs.run_job`, :func:`~neurofm.tasks.finetune.run_finetune`,
:func:`~neurofm.tasks.baselines.evaluate_baseline`, :func:`~neurofm.tasks.reports.write_report`);
the demo only chooses small settings and keeps the test subjects out of pretraining. The
outputs land in ``out_dir`` (layout in :func:`run_demo`); ``demo.json`` records the settings, the
subjects of each partition, each stage's wall time and the headline metrics.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurofm.atomic import atomic_write_json
from neurofm.data.corpus import Corpus
from neurofm.data.prepare import prepare_corpus
from neurofm.data.pretraining_corpus import prepare_pretraining_corpus
from neurofm.data.sources import RecordingSource
from neurofm.data.splits import Split
from neurofm.datasets.download import network_allowed
from neurofm.datasets.registry import fetch
from neurofm.engine.config import PretrainConfig, TokenizerTrainConfig, load_config
from neurofm.engine.jobs import run_job
from neurofm.errors import CheckpointError, DatasetError
from neurofm.tasks.baselines import evaluate_baseline
from neurofm.tasks.data import load_task_windows, task_folds, task_sources
from neurofm.tasks.definitions import Task, get_task
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.finetune import run_finetune
from neurofm.tasks.finetune_config import load_finetune_config
from neurofm.tasks.reports import ReportFiles, format_interval, write_report

_log = logging.getLogger(__name__)

#: The demo's stages, in the order they run.
STAGES: tuple[str, ...] = ("prepare", "tokenizer", "pretrain_mem", "pretrain_fip", "finetune",
                           "baseline", "report")

TASK_NAME = "eegmat"


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo does: data, steps and epochs of every stage.

    Attributes:
        subjects: eegmat subjects used (the first ones, in registry order, among those available).
        eval_folds: folds of the task's subject-wise split that are fine-tuned and scored; their
            test subjects are held out of pretraining.
        tokenizer_steps, mem_steps, fip_steps: optimizer steps of the three pretraining runs.
        pretrain_lr: peak learning rate of masked-EEG modelling and FIP (short runs need more than
            the published recipes, which are tuned for 50-100 epochs of thousands of hours).
        tokenizer_lr: peak learning rate of the tokenizer. Its codebook collapses onto a few codes
            as training goes on, the faster the higher the rate (measured on the demo's corpus,
            batch 32, 150 steps: batch code perplexity 354 -> 1.0 at 3e-4, -> 2.2 at 1e-4, -> 212
            at 2e-5), and a collapsed codebook leaves masked-EEG modelling nothing to predict.
        pretrain_batch_size: windows per pretraining step (4-s windows of 19 channels).
        finetune_epochs: fine-tuning epochs per fold (5-s windows; the recipe's warm-up fraction).
        finetune_batch_size: windows per fine-tuning step.
        bootstrap: bootstrap resamples over subjects for the confidence intervals.
        pretraining_datasets: the registry's EEG datasets pretraining draws on (``None``: every
            one present in the mirror; see :func:`prepare_pretraining_corpus`).
    """

    subjects: int
    eval_folds: int
    tokenizer_steps: int
    mem_steps: int
    fip_steps: int
    finetune_epochs: int
    pretrain_lr: float = 1e-3
    tokenizer_lr: float = 2e-5
    pretrain_batch_size: int = 32
    finetune_batch_size: int = 32
    bootstrap: int = 1000
    pretraining_datasets: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return dataclasses.asdict(self)


#: ``neurofm demo``: 12 subjects, 2 of the 8 folds scored (their validation and test subjects held
#: out of pretraining).
FULL = DemoSettings(subjects=12, eval_folds=2, tokenizer_steps=300, mem_steps=300, fip_steps=600,
                    finetune_epochs=10)
#: ``neurofm demo --quick``: the same stages with 6 subjects, one fold and a few steps (smoke test).
QUICK = DemoSettings(subjects=6, eval_folds=1, tokenizer_steps=4, mem_steps=4, fip_steps=4,
                     finetune_epochs=1, pretrain_batch_size=16, finetune_batch_size=32,
                     bootstrap=100)

#: The small architectures the demo trains: (pretraining network, fine-tuning backbone).
LABRAM_MODELS = ("labram_small_mem", "labram_small")
NEUROBERT_MODEL = "neurobert_small"
TOKENIZER_MODEL = "vqnsp_small"


@dataclass
class StageRecord:
    """One finished stage: its name, wall time in seconds and a one-line summary."""

    name: str
    seconds: float
    summary: str


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        out_dir: the output folder.
        report: the report files (Markdown, HTML, plots).
        results: the evaluation results in report order (4 fine-tuned systems, then the baseline).
        stages: the finished stages in order, with their wall times.
        held_out_subjects: the validation and test subjects of the evaluated folds (never seen
            in pretraining).
        pretraining_subjects: ``dataset/subject`` of every subject whose EEG the tokenizer and
            the models pretrained on (recordings without a subject id are not listed).
        seconds: total wall time.
        summary_path: ``demo.json``.
    """

    out_dir: Path
    report: ReportFiles
    results: list[EvaluationResult]
    stages: list[StageRecord]
    held_out_subjects: list[str]
    pretraining_subjects: list[str]
    seconds: float
    summary_path: Path


class _StageClock:
    """Prints ``[i/N] stage: what`` when a stage starts and its wall time when it ends."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.start = time.perf_counter()
        self.records: list[StageRecord] = []

    def begin(self, name: str, what: str) -> float:
        position = STAGES.index(name) + 1
        self.say(f"[{position}/{len(STAGES)}] {name}: {what} (at {self.elapsed()})")
        return time.perf_counter()

    def end(self, name: str, started: float, summary: str) -> None:
        seconds = time.perf_counter() - started
        self.records.append(StageRecord(name, seconds, summary))
        self.say(f"    {name} done in {seconds:.0f} s: {summary}")

    def elapsed(self) -> str:
        seconds = int(time.perf_counter() - self.start)
        return f"{seconds // 60}:{seconds % 60:02d} elapsed"


def demo_sources(task: Task, n_subjects: int, mirror: str | Path | None = None
                 ) -> list[RecordingSource]:
    """The recordings of the first ``n_subjects`` subjects of ``task``'s dataset available locally.

    Looks in the mirror (``mirror`` or ``$NEUROFM_MIRROR``) and the download cache first; when
    neither holds the dataset, downloads and verifies it (unless ``NEUROFM_OFFLINE=1``, in which
    case the :class:`DatasetError` says how to get it). Raises :class:`DatasetError` when fewer
    than three subjects (a fold's test, validation and training subject) are available.
    """
    try:
        sources = task_sources(task, mirror=mirror)
    except DatasetError:
        if not network_allowed():
            raise
        _log.warning("%s is not available locally; downloading it (verified against the "
                     "published checksums)", task.dataset)
        fetch(task.dataset, mirror=mirror)
        sources = task_sources(task, mirror=mirror)
    subjects = sorted({source.subject or source.id for source in sources})
    # Each fold needs a test, a validation and a training subject.
    needed = 3
    if len(subjects) < needed or n_subjects < needed:
        raise DatasetError(
            f"the demo needs at least {needed} {task.dataset} subjects (test, validation and "
            f"training); {n_subjects} were asked for and {len(subjects)} are available "
            f"({', '.join(subjects)}); run `neurofm datasets fetch {task.dataset}` to download "
            "the rest")
    chosen = set(subjects[:n_subjects])
    return [source for source in sources if (source.subject or source.id) in chosen]


def held_out_subjects(folds: list[Split]) -> list[str]:
    """The validation and test subjects of ``folds``: what pretraining must never see (the
    overlap guard refuses fine-tuning otherwise)."""
    return sorted({subject for fold in folds for part in ("val", "test")
                   for subject in fold.groups[part]})


def _pretrain_overrides(settings: DemoSettings, steps: int, lr: float, progress: bool) -> list[str]:
    # With run.max_steps the epochs only set the warm-up fraction: 1 of 10 is 10% of the steps.
    return [f"run.max_steps={steps}", f"optim.lr={lr}",
            "optim.lr_batch_scaling=none", "optim.epochs=10", "optim.warmup_epochs=1",
            f"data.batch_size={settings.pretrain_batch_size}", "data.window_seconds=4",
            "data.stride_seconds=4", "run.tensorboard=false", f"run.progress={str(progress).lower()}",
            "run.device=cpu", "run.keep_last=1"]


def _code_perplexity(run_dir: Path) -> float | None:
    from neurofm.engine.metrics_log import read_metrics

    # The last logged batch's code perplexity (codes in effective use; at most n_codes).
    rows = read_metrics(run_dir / "metrics.csv", split="train", name="batch_perplexity")
    return float(rows[-1][3]) if rows else None


def _last_loss(losses: list[float]) -> str:
    finite = [loss for loss in losses if loss == loss]
    return f"loss {finite[0]:.3f} -> {finite[-1]:.3f}" if finite else "no finite loss"


def _pretrained_init(run_dir: Path, best: Path | None, last: Path | None) -> str:
    # The exported model/ folder when the job wrote one, else the engine's training checkpoint.
    if (run_dir / "model" / "config.json").is_file():
        return str(run_dir / "model")
    checkpoint = best or last
    if checkpoint is None:
        raise CheckpointError(f"pretraining in {run_dir} left no checkpoint to fine-tune from")
    return str(checkpoint)


def run_demo(
    out_dir: str | Path,
    quick: bool = False,
    *,
    settings: DemoSettings | None = None,
    mirror: str | Path | None = None,
    progress: bool = True,
    threads: int | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out_dir`` and return what it produced.

    Args:
        out_dir: output folder. It receives ``corpus/`` (the task corpus), ``pretrain_corpus/``
            (without the held-out subjects), ``tokenizer/``, ``pretrain_mem/``, ``pretrain_fip/``
            (engine run folders: config, metrics, checkpoints, model), ``finetune/<system>/``
            (per fold: config, metrics, best checkpoint, predictions; results per seed),
            ``baseline.json``, ``report/`` (``report.md``, ``report.html``, PNG plots) and
            ``demo.json`` (settings, partitions, stage times, headline metrics).
        quick: the smoke-test settings (:data:`QUICK`) instead of :data:`FULL`.
        settings: explicit settings (overrides ``quick``).
        mirror: dataset mirror folder (default ``$NEUROFM_MIRROR``, then the download cache).
        progress: tqdm progress bars inside the stages.
        threads: torch intra-op threads while the demo runs (restored afterwards); None keeps the
            current setting.
        say: where the stage lines go (``print`` by default).
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(Path(out_dir), settings or (QUICK if quick else FULL), mirror, progress,
                         say)
    finally:
        torch.set_num_threads(previous_threads)


def _run_demo(out_dir: Path, settings: DemoSettings, mirror: str | Path | None, progress: bool,
              say: Callable[[str], None]) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(TASK_NAME)
    clock = _StageClock(say)
    say(f"neurofm demo{' --quick' if settings is QUICK else ''}: {task.description}; "
        f"outputs in {out_dir}")

    # 1. Data: the task corpus, its folds, and the all-EEG pretraining corpora without the
    #    evaluated folds' validation and test subjects.
    started = clock.begin("prepare", f"{settings.subjects} {task.dataset} subjects -> corpora")
    sources = demo_sources(task, settings.subjects, mirror)
    preparation = prepare_corpus(sources, out_dir / "corpus", task.preprocess_config(),
                                 progress=progress)
    if preparation.failed:
        raise DatasetError(f"the demo could not prepare every recording: {preparation.summary()}")
    corpus = Corpus(preparation.corpus_dir)
    folds = task_folds(task, corpus)[: settings.eval_folds]
    held_out = held_out_subjects(folds)
    pretraining = {
        policy: prepare_pretraining_corpus(
            out_dir / "pretrain_corpus", exclude_subjects={task.dataset: held_out},
            exclusion=f"the validation and test subjects of the demo's {len(folds)} fold(s)",
            channels=policy, datasets=settings.pretraining_datasets, mirror=mirror,
            progress=progress)
        for policy in ("vocabulary", "all-eeg")}
    pretraining_subjects = sorted({f"{share.name}/{subject}" for report in pretraining.values()
                                   for share in report.datasets for subject in share.subjects})
    windows = load_task_windows(task, corpus)
    labram_corpus = pretraining["vocabulary"].preparation.corpus_dir
    neurobert_corpus = pretraining["all-eeg"].preparation.corpus_dir
    clock.end("prepare", started,
              f"{len(corpus)} recordings ({preparation.hours * 60:.0f} min of EEG); "
              f"validation and test subjects {', '.join(held_out)} held out of pretraining, which "
              f"uses {pretraining['all-eeg'].hours:.1f} h of EEG from "
              + ", ".join(f"{share.name} ({share.hours:.2f} h)"
                          for share in pretraining["all-eeg"].datasets if share.recordings))
    # 2. VQ-NSP tokenizer.
    started = clock.begin("tokenizer", f"{TOKENIZER_MODEL}, {settings.tokenizer_steps} steps")
    tokenizer_config = load_config(
        TokenizerTrainConfig, base={"model": TOKENIZER_MODEL},
        overrides=_pretrain_overrides(settings, settings.tokenizer_steps, settings.tokenizer_lr,
                                       progress))
    tokenizer_run = out_dir / "tokenizer"
    tokenizer = run_job(tokenizer_config, labram_corpus, tokenizer_run)
    usage = _code_perplexity(tokenizer_run)
    clock.end("tokenizer", started, f"{_last_loss(tokenizer.losses)}"
              + (f"; code perplexity {usage:.0f} (codes in effective use)" if usage is not None
                 else ""))

    # 3. LaBraM masked-EEG modelling against the tokenizer's codes.
    started = clock.begin("pretrain_mem", f"{LABRAM_MODELS[0]}, {settings.mem_steps} steps")
    mem_config = load_config(
        PretrainConfig,
        base={"objective": "mem", "tokenizer": str(tokenizer_run / "model"),
              "model": LABRAM_MODELS[0]},
        overrides=_pretrain_overrides(settings, settings.mem_steps, settings.pretrain_lr, progress))
    mem_run = out_dir / "pretrain_mem"
    mem = run_job(mem_config, labram_corpus, mem_run)
    labram_init = _pretrained_init(mem_run, mem.best_checkpoint, mem.last_checkpoint)
    clock.end("pretrain_mem", started, _last_loss(mem.losses))

    # 4. Neuro-BERT Fourier inversion prediction.
    started = clock.begin("pretrain_fip", f"{NEUROBERT_MODEL}, {settings.fip_steps} steps")
    fip_config = load_config(
        PretrainConfig, base={"objective": "fip", "model": NEUROBERT_MODEL},
        overrides=_pretrain_overrides(settings, settings.fip_steps, settings.pretrain_lr, progress))
    fip_run = out_dir / "pretrain_fip"
    fip = run_job(fip_config, neurobert_corpus, fip_run)
    neurobert_init = _pretrained_init(fip_run, fip.best_checkpoint, fip.last_checkpoint)
    clock.end("pretrain_fip", started, _last_loss(fip.losses))

    # 5. Fine-tuning, pretrained and from scratch, on the evaluated folds.
    systems = (
        ("LaBraM pretrained (MEM)", LABRAM_MODELS[1], labram_init),
        ("LaBraM scratch", LABRAM_MODELS[1], "scratch"),
        ("Neuro-BERT pretrained (FIP)", NEUROBERT_MODEL, neurobert_init),
        ("Neuro-BERT scratch", NEUROBERT_MODEL, "scratch"),
    )
    started = clock.begin("finetune", f"{len(systems)} systems x {len(folds)} fold(s) x "
                                      f"{settings.finetune_epochs} epoch(s)")
    results: list[EvaluationResult] = []
    for name, model, init in systems:
        say(f"    fine-tuning {name}")
        config = load_finetune_config(
            overrides=[f"data.batch_size={settings.finetune_batch_size}", "run.tensorboard=false",
                       f"run.progress={str(progress).lower()}", "run.device=cpu"],
            flags={"task_name": task.name, "init": init, "model": model, "mode": "full",
                   "optim.epochs": settings.finetune_epochs})
        outcome = run_finetune(
            config, windows, folds, out_dir / "finetune" / _folder_name(name), system=name,
            baseline=False, n_resamples=settings.bootstrap, progress=progress,
            corpus=str(corpus.path))
        result = outcome.results[0]
        result.system = name  # one seed: the report names the system, not "... seed 0"
        results.append(result)
    clock.end("finetune", started, "; ".join(
        f"{r.system} {task.primary_metric} {r.pooled[task.primary_metric]:.3f}" for r in results))

    # 6. The classical baseline on the same folds and windows.
    started = clock.begin("baseline", f"{task.baseline} on the same {len(folds)} fold(s)")
    baseline = evaluate_baseline(task, windows, folds, corpus=str(corpus.path), progress=progress,
                                 n_resamples=settings.bootstrap)
    baseline.save(out_dir / "baseline.json")
    results.append(baseline)
    clock.end("baseline", started,
              f"{task.primary_metric} {baseline.pooled[task.primary_metric]:.3f}")

    # 7. The report.
    started = clock.begin("report", "Markdown + HTML with plots")
    report = write_report(results, out_dir / "report",
                          title="neurofm demo: eegmat, pretrained vs scratch vs band-power baseline")
    clock.end("report", started, f"{len(report.figures)} plots")

    total = time.perf_counter() - clock.start
    demo = DemoResult(out_dir, report, results, clock.records, held_out, pretraining_subjects,
                      seconds=total, summary_path=out_dir / "demo.json")
    atomic_write_json(demo.summary_path, _summary(demo, settings, task, folds))
    _print_table(demo, task, say)
    say(f"done in {total / 60:.1f} min. Report: {report.markdown} and {report.html}; "
        f"everything else (corpora, runs, checkpoints, results) under {out_dir}")
    return demo


def _folder_name(system: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in system.lower()).strip("_").replace("__", "_")


def _summary(demo: DemoResult, settings: DemoSettings, task: Task, folds: list[Split]
             ) -> dict[str, Any]:
    return {
        "format": "neurofm-demo",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "task": task.name,
        "settings": settings.to_dict(),
        "folds": [fold.to_dict() for fold in folds],
        "held_out_subjects": demo.held_out_subjects,
        "pretraining_subjects": demo.pretraining_subjects,
        "stages": [dataclasses.asdict(record) for record in demo.stages],
        "seconds": demo.seconds,
        "report": {"markdown": str(demo.report.markdown), "html": str(demo.report.html),
                   "figures": [str(path) for path in demo.report.figures]},
        "results": {result.system: {name: result.over_subjects[name].to_dict()
                                    for name in task.metrics} for result in demo.results},
    }


def _print_table(demo: DemoResult, task: Task, say: Callable[[str], None]) -> None:
    metrics = list(task.metrics)
    width = max(len(result.system) for result in demo.results)
    say(f"\n{'system':{width}s}  " + "  ".join(f"{m:26s}" for m in metrics))
    for result in demo.results:
        say(f"{result.system:{width}s}  " + "  ".join(
            f"{format_interval(result.over_subjects[m]):26s}" for m in metrics))
    tested = sorted({s for fold in demo.results[0].folds for s in fold.scored_groups})
    say(f"({len(tested)} test subjects: {', '.join(tested)}; 95% bootstrap intervals over "
        "subjects)")
    for result in demo.results:
        if (collapse := result.collapse()):
            say(f"warning, {result.system}: {collapse}")
    say("")
