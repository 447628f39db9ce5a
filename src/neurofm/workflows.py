"""The workflows the CLI runs, as library calls: evaluate a task's baseline, fine-tune on a task.

Each prepares the task's corpus from the registry's verified files (or a folder laid out like the
dataset), cuts its windows, builds its folds and runs the job; ``echo`` receives the lines the CLI
prints on the way (preparation summary, split notes). The CLI commands only parse arguments,
call these and print the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurofm.atomic import atomic_write_json

if TYPE_CHECKING:
    from neurofm.data.corpus import Corpus
    from neurofm.data.splits import Split
    from neurofm.tasks.data import TaskWindows
    from neurofm.tasks.definitions import Task
    from neurofm.tasks.evaluate import EvaluationResult
    from neurofm.tasks.finetune import FinetuneOutcome

Echo = Callable[[str], None]


def _silent(line: str) -> None:
    """Discard a progress line."""


def task_data(task: Task, corpus: str | Path | None = None, *, mirror: str | Path | None = None,
              dataset_dir: str | Path | None = None, workers: int = 1, progress: bool = True,
              echo: Echo = _silent) -> tuple[Corpus, TaskWindows, list[Split]]:
    """The task's prepared corpus (under ``corpus``, default the cache's corpora folder), its
    windows and its folds; prints the preparation summary and split notes through ``echo``."""
    from neurofm.tasks.data import (
        default_corpus_root,
        load_task_windows,
        prepare_task_corpus,
        task_folds,
    )

    root = Path(corpus) if corpus else default_corpus_root()
    prepared, preparation = prepare_task_corpus(task, root, mirror=mirror, dataset_dir=dataset_dir,
                                                workers=workers, progress=progress)
    echo(preparation.summary())
    windows = load_task_windows(task, prepared)
    folds = task_folds(task, prepared)
    for note in dict.fromkeys(fold.note for fold in folds if fold.note):
        echo(f"split: {note}")
    return prepared, windows, folds


#: Reference systems ``evaluate`` can add beside the baseline: name -> the modules they need.
REFERENCES: dict[str, tuple[str, ...]] = {"yasa": ("yasa", "lightgbm")}


def evaluate(task: str, corpus: str | Path | None = None, out: str | Path | None = None, *,
             split: str | None = None, references: Sequence[str] = (),
             mirror: str | Path | None = None, dataset_dir: str | Path | None = None,
             n_resamples: int = 1000, seed: int = 0, max_folds: int | None = None,
             workers: int = 1, progress: bool = True, echo: Echo = _silent) -> EvaluationResult:
    """The task's classical baseline on its split, scored as every system is (with
    ``references`` beside it: see :func:`evaluate_systems`, which also returns theirs).

    Writes ``out`` (default ``neurofm-eval/<task>``): the result JSON of each system,
    ``folds.json`` and the report (``report.md``, ``report.html``). Returns the baseline's
    result.
    """
    return evaluate_systems(task, corpus, out, split=split, references=references,
                            mirror=mirror, dataset_dir=dataset_dir, n_resamples=n_resamples,
                            seed=seed, max_folds=max_folds, workers=workers, progress=progress,
                            echo=echo)[0]


def evaluate_systems(task: str, corpus: str | Path | None = None, out: str | Path | None = None,
                     *, split: str | None = None, references: Sequence[str] = (),
                     mirror: str | Path | None = None, dataset_dir: str | Path | None = None,
                     n_resamples: int = 1000, seed: int = 0, max_folds: int | None = None,
                     workers: int = 1, progress: bool = True, echo: Echo = _silent
                     ) -> list[EvaluationResult]:
    """The task's classical baseline and the ``references`` (:data:`REFERENCES`) on the same
    windows and folds: ``"yasa"``, YASA's pretrained sleep stager
    (:func:`neurofm.tasks.sleep.evaluate_yasa`; sleep-staging tasks with 30-s epochs, needs
    ``neurofm[sleep]``). Returns their results, the baseline's first.

    A reference that is unknown, does not apply to the task or whose library is not installed
    is refused with a :class:`~neurofm.errors.ConfigError` before anything is prepared; the
    references run before the baseline, so that one the data refuses fails before the
    baseline's work. Writes what :func:`evaluate` writes, one report for all the systems.
    """
    from neurofm.tasks.baselines import evaluate_baseline
    from neurofm.tasks.definitions import get_task
    from neurofm.tasks.reports import write_report

    chosen = get_task(task).using_split(split)
    _check_references(chosen, references)
    out_dir = Path(out) if out else Path("neurofm-eval") / chosen.name
    prepared, windows, folds = task_data(chosen, corpus, mirror=mirror, dataset_dir=dataset_dir,
                                         workers=workers, progress=progress, echo=echo)
    extra = []
    if "yasa" in references:
        from neurofm.tasks.sleep import evaluate_yasa

        extra.append(evaluate_yasa(chosen, windows, folds, prepared, max_folds=max_folds,
                                   progress=progress, n_resamples=n_resamples, seed=seed))
    results = [evaluate_baseline(chosen, windows, folds, corpus=str(prepared.path),
                                 max_folds=max_folds, progress=progress,
                                 n_resamples=n_resamples, seed=seed), *extra]
    for result in results:
        result.save(out_dir / f"{result.system}.json")
    atomic_write_json(out_dir / "folds.json", [fold.to_dict() for fold in results[0].folds])
    write_report(results, out_dir)
    return results


def _check_references(task: Task, references: Sequence[str]) -> None:
    """:class:`~neurofm.errors.ConfigError` for a reference that is unknown, does not apply to
    ``task`` or lacks its library."""
    import importlib.util

    from neurofm.errors import ConfigError

    for name in references:
        if name not in REFERENCES:
            raise ConfigError(f"--reference {name!r}: unknown reference system; known: "
                              f"{', '.join(REFERENCES)}")
        if name == "yasa" and not task.hypnogram:
            raise ConfigError(f"--reference yasa is YASA's pretrained sleep stager, but task "
                              f"{task.name!r} is not a sleep-staging task (its windows are not "
                              "the epochs of a night); use it with dreams_sleep_staging")
        missing = [module for module in REFERENCES[name]
                   if importlib.util.find_spec(module) is None]
        if missing:
            raise ConfigError(f"--reference {name} needs {' and '.join(missing)}, which "
                              f"{'is' if len(missing) == 1 else 'are'} not installed: "
                              "pip install 'neurofm[sleep]' (yasa, antropy, lightgbm)")


def finetune(task: str, out: str | Path, corpus: str | Path | None = None, *,
             init: str = "scratch", model: str | None = None, mode: str | None = None,
             split: str | None = None, epochs: int | None = None,
             config: str | Path | None = None, overrides: Sequence[str] = (),
             seeds: Sequence[int] = (0,), max_folds: int | None = None, system: str | None = None,
             baseline: bool = True, resume: bool = False, n_resamples: int = 1000,
             compare: Sequence[EvaluationResult] = (), allow_overlap: bool = False,
             mirror: str | Path | None = None, dataset_dir: str | Path | None = None,
             workers: int = 1, progress: bool = True, echo: Echo = _silent) -> FinetuneOutcome:
    """Fine-tune ``model`` from ``init`` on every fold of ``task`` for every seed; score,
    summarise and report (:func:`neurofm.tasks.finetune.run_finetune`, whose output layout it
    writes under ``out``).

    ``config`` (a YAML file) and ``overrides`` (``key=value``) adjust the recipe
    (:func:`neurofm.tasks.finetune_config.load_finetune_config`). Under ``torchrun`` rank 0
    prepares the corpus first and only rank 0 echoes.
    """
    from neurofm.engine.distributed import barrier, init_distributed
    from neurofm.errors import ConfigError
    from neurofm.tasks.finetune import run_finetune
    from neurofm.tasks.finetune_config import load_finetune_config

    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds repeats a seed: {list(seeds)}")
    out_dir = Path(out)
    if (out_dir / "results.json").exists() and not resume:
        raise ConfigError(f"{out_dir} already holds a fine-tuning run (results.json); pass "
                          "--resume to continue it or choose another --out")
    flags: dict[str, Any] = {"task_name": task, "split": split, "init": init, "model": model,
                             "mode": mode, "optim.epochs": epochs}
    if not progress:
        flags["run.progress"] = False
    job = load_finetune_config(config, overrides, flags)
    for other in compare:
        if other.task_name != task:
            raise ConfigError(f"--compare: {other.system!r} is a result on task "
                              f"{other.task_name!r}, not {task!r}")
    chosen = job.get_task()
    ctx = init_distributed(job.run.device)
    # Under torchrun, rank 0 prepares the corpus; the others then find every recording done.
    if ctx.is_main:
        prepared, windows, folds = task_data(chosen, corpus, mirror=mirror,
                                             dataset_dir=dataset_dir, workers=workers,
                                             progress=progress, echo=echo)
    barrier(ctx)
    if not ctx.is_main:
        prepared, windows, folds = task_data(chosen, corpus, mirror=mirror,
                                             dataset_dir=dataset_dir, workers=workers,
                                             progress=False)
    return run_finetune(job, windows, folds, out_dir, seeds=seeds, max_folds=max_folds,
                        system=system, baseline=baseline, resume=resume,
                        n_resamples=n_resamples, progress=progress, corpus=str(prepared.path),
                        compare=compare, allow_overlap=allow_overlap)
