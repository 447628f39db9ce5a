"""Markdown + HTML reports comparing systems on one task, with PNG plots (matplotlib, Agg).

A report holds: the task (dataset, preprocessing, windows, classes, selection metric), the split
(how subjects were assigned, per fold), a metrics table with one row per system (pretrained,
scratch, baseline...) and confidence intervals, and the plots: a confusion matrix per system,
per-subject scores, learning curves (when a system's result names its training-metrics CSV) and,
for sleep staging, hypnograms of the true and predicted stages.

Both formats are rendered from one list of blocks, so the Markdown and the HTML always agree.
"""

from __future__ import annotations

import csv
import html
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first
import numpy as np
from sklearn.metrics import confusion_matrix

from neurofm.atomic import atomic_path, atomic_write_text
from neurofm.errors import ConfigError
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.metrics import METRIC_NAMES, Interval, per_class_metrics

_METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced acc.",
    "cohen_kappa": "Cohen's κ",
    "f1_macro": "Macro F1",
    "f1_weighted": "Weighted F1",
    "auroc": "AUROC",
    "auc_pr": "AUC-PR",
}

#: Vertical order of sleep stages in a hypnogram, wake on top (the clinical convention).
_HYPNOGRAM_ORDER = ("W", "REM", "N1", "N2", "N3")


@dataclass
class _Heading:
    text: str
    level: int = 2


@dataclass
class _Paragraph:
    text: str


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class _Image:
    path: str
    caption: str


@dataclass
class ReportFiles:
    """The files a report consists of."""

    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)


def format_interval(interval: Interval) -> str:
    """``0.812 [0.771, 0.850]``; the estimate alone when the interval is undefined, and with
    ``(interval n/a: 1 subject)`` when a bootstrap over one subject cannot form one."""
    if not np.isfinite(interval.estimate):
        return "n/a"
    if interval.method == "bootstrap over subjects" and interval.n < 2:
        return f"{interval.estimate:.3f} (interval n/a: {interval.n} subject)"
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return f"{interval.estimate:.3f}"
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _save_figure(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_confusion_matrix(result: EvaluationResult, path: Path) -> Path:
    """Row-normalised confusion matrix (recall per true class) with counts, as a PNG."""
    names = result.class_names
    predictions = result.predictions
    counts = confusion_matrix(predictions.y_true, predictions.y_pred, labels=range(len(names)))
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
    size = 1.2 + 0.7 * len(names)
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if rates[i, j] > 0.5 else "black"
            axes.text(j, i, f"{rates[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center",
                      fontsize=8, color=colour)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{result.system}: fraction of each true class (count)")
    figure.colorbar(image, ax=axes, fraction=0.046)
    return _save_figure(figure, path)


def _chance_level(metric: str, n_classes: int) -> float | None:
    """What a classifier that ignores its input scores, where that does not depend on the data."""
    return {"auroc": 0.5, "balanced_accuracy": 1.0 / n_classes, "cohen_kappa": 0.0}.get(metric)


def plot_per_subject(results: Sequence[EvaluationResult], metric: str, path: Path) -> Path:
    """Grouped bars of ``metric`` per test subject, one bar per system, as a PNG."""
    subjects = sorted({s for r in results for s in r.subject_metrics})
    width = 0.8 / len(results)
    width_inches = min(14.0, max(6.0, 0.25 * len(subjects) * len(results) + 3))
    figure, axes = plt.subplots(figsize=(width_inches, 3.6))
    positions = np.arange(len(subjects))
    for k, result in enumerate(results):
        values = [result.subject_metrics.get(s, {}).get(metric, np.nan) for s in subjects]
        axes.bar(positions + (k - (len(results) - 1) / 2) * width, values, width,
                 label=result.system)
    axes.set_xticks(positions, subjects, rotation=45, ha="right")
    axes.set_ylabel(_METRIC_LABELS.get(metric, metric))
    axes.set_xlabel(str(results[0].task["split"]["unit"]))
    low = min(0.0, float(np.nanmin([r.subject_metrics[s].get(metric, np.nan) for r in results
                                     for s in r.subject_metrics] + [0.0])))
    axes.set_ylim(low, 1.0)
    chance = _chance_level(metric, len(results[0].class_names))
    if chance is not None:
        axes.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title(f"{_METRIC_LABELS.get(metric, metric)} per test {results[0].task['split']['unit']}")
    axes.grid(axis="y", alpha=0.3)
    return _save_figure(figure, path)


def read_history(path: str | os.PathLike) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Read a training-metrics CSV (``step, epoch, split, name, value, wall_time``).

    Returns ``{(split, name): (steps [S], values [S])}`` sorted by step. A file without those
    columns raises :class:`ConfigError` naming it.
    """
    path = Path(path)
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"step", "split", "name", "value"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"metrics CSV {path} lacks column(s) {sorted(missing)}; expected "
                                  "the long format step,epoch,split,name,value,wall_time")
            for row in reader:
                series[(row["split"], row["name"])].append((int(row["step"]), float(row["value"])))
    except FileNotFoundError:
        raise ConfigError(f"metrics CSV {path} does not exist") from None
    curves = {}
    for key, points in series.items():
        points.sort()
        curves[key] = (np.array([p[0] for p in points]), np.array([p[1] for p in points]))
    return curves


def plot_learning_curves(history_csv: str | os.PathLike, title: str, path: Path) -> Path:
    """One panel per metric name, one line per split (train, val...) against the step, as a PNG."""
    curves = read_history(history_csv)
    names = sorted({name for _, name in curves})
    if not names:
        raise ConfigError(f"metrics CSV {history_csv} holds no rows to plot")
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for panel, name in zip(axes.flat, names):
        for (split, metric), (steps, values) in sorted(curves.items()):
            if metric == name:
                panel.plot(steps, values, marker="." if len(steps) < 50 else None, label=split)
        panel.set_title(name)
        panel.set_xlabel("step")
        panel.grid(alpha=0.3)
        panel.legend(fontsize=8)
    for panel in list(axes.flat)[len(names):]:
        panel.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    return _save_figure(figure, path)


def plot_hypnogram(result: EvaluationResult, recording: str, path: Path) -> Path:
    """True and predicted stage of each epoch of one recording against time (hours), as a PNG."""
    predictions = result.predictions.select(result.predictions.recording == recording)
    if len(predictions.y_true) == 0:
        raise ConfigError(f"no predictions for recording {recording!r} in {result.system}")
    order = np.argsort(predictions.onset)
    names = result.class_names
    ranked = [n for n in _HYPNOGRAM_ORDER if n in names] + [n for n in names
                                                             if n not in _HYPNOGRAM_ORDER]
    level = np.array([ranked.index(n) for n in names])
    # The last epoch needs its end time too, or the step plot stops at its onset.
    epoch = float(result.task["window"]["seconds"])
    hours = np.append(predictions.onset[order], predictions.onset[order][-1] + epoch) / 3600.0
    figure, axes = plt.subplots(2, 1, figsize=(9, 4), sharex=True, sharey=True)
    # Short axis labels (a system name there would run into the other panel's); the system is
    # named in the lower panel's title.
    for panel, classes, label in ((axes[0], predictions.y_true, "true"),
                                  (axes[1], predictions.y_pred, "predicted")):
        stages = level[classes[order]]
        panel.step(hours, np.append(stages, stages[-1]), where="post", linewidth=1.0)
        panel.set_yticks(range(len(ranked)), ranked)
        panel.set_ylim(len(ranked) - 0.5, -0.5)
        panel.set_ylabel(label)
        panel.grid(alpha=0.3)
    agreement = float(np.mean(predictions.y_true == predictions.y_pred))
    axes[0].set_title(f"{recording}: {len(order)} epochs, agreement {agreement:.2f}")
    axes[1].set_title(f"predicted by {result.system}", fontsize=10)
    axes[1].set_xlabel("time from recording start (h)")
    figure.tight_layout()
    return _save_figure(figure, path)


def _metrics_table(results: Sequence[EvaluationResult], kind: str) -> _Table:
    task_metrics = list(results[0].task.get("metrics", METRIC_NAMES))
    ordered = task_metrics + [m for m in METRIC_NAMES if m not in task_metrics]
    rows = []
    for result in results:
        intervals = result.over_subjects if kind == "subjects" else result.over_folds
        rows.append([result.system] + [format_interval(intervals[m]) for m in ordered])
    return _Table(["system"] + [_METRIC_LABELS[m] for m in ordered], rows)


def _number(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if np.isfinite(value) else "n/a"
    return str(value)


def _per_class_table(results: Sequence[EvaluationResult]) -> _Table:
    """Per system and class, on the pooled scored windows: support, predicted, recall,
    precision, F1 (n/a where undefined: a class absent from the windows or never predicted)."""
    rows = []
    for result in results:
        predictions = result.predictions
        for row in per_class_metrics(predictions.y_true, predictions.y_pred, result.class_names):
            rows.append([result.system] + [_number(row[k]) for k in
                                           ("class", "support", "predicted", "recall",
                                            "precision", "f1")])
    return _Table(["system", "class", "true windows", "predicted", "recall", "precision", "F1"],
                  rows)


def class_coverage(result: EvaluationResult) -> list[str]:
    """Sentences on classes a fold could not learn or score: classes with no window at all, and,
    per fold, classes absent from its training subjects. Training labels are known from the
    predictions when every training subject is scored in some fold (cross-validation over all
    folds); otherwise only the scored windows are described."""
    names = result.class_names
    predictions = result.predictions
    lines = []
    data = result.config.get("data") or {}
    counts = {int(k): int(v) for k, v in data.get("windows_per_class", {}).items()}
    if counts:
        absent = [names[k] for k in range(len(names)) if counts.get(k, 0) == 0]
        if absent:
            pronoun = "it" if len(absent) == 1 else "them"
            lines.append(
                f"{', '.join(absent)}: no window in the data, so no fold trains or scores "
                f"{pronoun}; recall is undefined (n/a), and macro-F1 counts such a class only "
                "when a system predicts it (its F1 is then 0)")
    per_subject: dict[str, set[int]] = defaultdict(set)
    for subject, label in zip(predictions.subject.tolist(), predictions.y_true.tolist()):
        per_subject[subject].add(int(label))
    for index, fold in enumerate(result.folds):
        train = fold.groups.get("train", ())
        if not train or any(s not in per_subject for s in train):
            continue
        seen = set().union(*(per_subject[s] for s in train))
        scored = set(predictions.y_true[predictions.fold == index].tolist())
        missing = [names[k] for k in sorted(scored - seen)]
        if missing:
            lines.append(f"fold {fold.name or index}: {', '.join(missing)} in its "
                         f"{fold.scored_label} windows but absent from its training "
                         f"{result.task['split']['unit']}s, so no system could learn it there")
    return lines


def _split_table(result: EvaluationResult) -> _Table:
    rows = [[fold.name or str(i)] + [", ".join(fold.groups[part]) or "-"
                                     for part in ("train", "val", "test")]
            + [fold.scored_label]
            for i, fold in enumerate(result.folds)]
    return _Table(["fold", "train", "validation", "test", "scored"], rows)


def _split_paragraphs(result: EvaluationResult) -> list[_Paragraph]:
    split = result.task["split"]
    text = f"Split `{split.get('name', '?')}`: {split['description']}."
    if split.get("source"):
        text += f" Source: {split['source']}."
    paragraphs = [_Paragraph(text)]
    for note in dict.fromkeys(fold.note for fold in result.folds if fold.note):
        paragraphs.append(_Paragraph(f"**Note:** {note}."))
    return paragraphs


def _pretraining_paragraphs(results: Sequence[EvaluationResult]) -> list:
    """What each system's initial weights were pretrained on, as the overlap guard found it."""
    paragraphs: list = []
    for result in results:
        lines = result.config.get("overlap", {}).get("report")
        if lines:
            paragraphs.append(_Paragraph(f"**{result.system}:** " + " ".join(lines)))
    return [_Heading("Pretraining data"), *paragraphs] if paragraphs else []


def _warnings(results: Sequence[EvaluationResult]) -> list[_Paragraph]:
    """A paragraph per collapsed system (one class for nearly every window)."""
    return [_Paragraph(f"**Warning, {result.system}:** {collapse}.")
            for result in results if (collapse := result.collapse())]


def _config_rows(result: EvaluationResult) -> _Table:
    task = result.task
    window = task["window"]
    preprocess = task.get("preprocess_config", {})
    stride = window.get("stride_seconds") or window["seconds"]
    rows = [
        ["dataset", str(task["dataset"])],
        ["classes", ", ".join(task["class_names"])],
        ["preprocessing", f"{task['preprocessing']}: " + ", ".join(
            f"{k}={v}" for k, v in preprocess.items()
            if k in ("pick_types", "l_freq", "h_freq", "notch_freq", "sfreq", "scale")
            or (k == "clamp_h_freq" and v))],
        ["windows", f"{window['seconds']:g} s, stride {stride:g} s, labels from "
                    f"{window['label_mode']}"
         + (f", onset + {window['event_offset_seconds']:g} s" if window.get(
             "event_offset_seconds") is not None else "")
         + (f", channels {window['channels']}" if window.get("channels") else "")
         + (f", channel: first of {window['derivation']}" if window.get("derivation") else "")
         + (f" each recording has, presented as {window['derivation_name']}"
            if window.get("derivation_name") else "")],
        ["model selection metric", str(task["primary_metric"])],
    ]
    return _Table(["setting", "value"], rows)


def _system_table(results: Sequence[EvaluationResult]) -> _Table:
    rows = []
    for result in results:
        settings = {k: v for k, v in result.config.items()
                    if k not in ("data", "bootstrap", "overlap", "cost")}
        described = "; ".join(f"{k}: {v}" for k, v in settings.items())
        rows.append([result.system, described or "-", result.created, result.neurofm_version])
    return _Table(["system", "configuration", "evaluated (UTC)", "neurofm"], rows)


def _cost_blocks(results: Sequence[EvaluationResult]) -> list:
    """A table of what each fine-tuned system cost (results that record a ``cost``): its mode,
    trainable and total parameters, peak memory and how it was measured, time per fold."""
    rows = []
    for result in results:
        cost = result.config.get("cost")
        if not cost:
            continue
        mode = (result.config.get("finetune") or {}).get("mode", "?")
        share = cost["trainable_parameters"] / max(cost["total_parameters"], 1)
        epochs = cost.get("epochs_per_fold")
        rows.append([result.system, str(mode), f"{cost['trainable_parameters']:,}",
                     f"{cost['total_parameters']:,}", f"{100 * share:.3g}%",
                     f"{cost['peak_memory_bytes'] / 2**20:,.0f} MiB",
                     str(cost["peak_memory_measure"]), f"{cost['fit_seconds_per_fold']:.1f}",
                     "-" if epochs is None else f"{epochs:g}"])
    if not rows:
        return []
    return [_Heading("Cost"), _Table(["system", "mode", "trainable parameters",
                                      "total parameters", "trainable share", "peak memory",
                                      "memory measure", "seconds per fold", "epochs per fold"],
                                     rows)]


def _blocks(results: Sequence[EvaluationResult], out_dir: Path, title: str
            ) -> tuple[list, list[Path]]:
    first = results[0]
    figures: list[Path] = []
    blocks: list = [_Heading(title, 1), _Paragraph(str(first.task["description"]))]
    blocks += [_Heading("Task"), _config_rows(first)]
    data = first.config.get("data")
    if data:
        blocks.append(_Paragraph(
            f"{data['windows']} windows from {data['recordings']} recordings of {data['subjects']} "
            f"{first.task['split']['unit']}s; windows per class: " + ", ".join(
                f"{first.class_names[int(c)]} {n}" for c, n in data["windows_per_class"].items())
            + (("; windows dropped by the labelling: " + ", ".join(
                f"{reason} {n}" for reason, n in data["dropped_windows"].items()))
               if data.get("dropped_windows") else "") + "."))
    blocks += [_Heading("Split"), *_split_paragraphs(first), _split_table(first)]
    bootstrap = first.config.get("bootstrap", {})
    unit = first.task["split"]["unit"]
    scored = first.folds[0].scored_label
    blocks += [
        _Heading("Results"),
        _Paragraph(
            f"Each cell: the metric on all {scored} windows pooled over folds, with the "
            f"{100 * first.over_subjects[METRIC_NAMES[0]].confidence:g}% percentile bootstrap "
            f"interval over {unit}s ({bootstrap.get('n_resamples', '?')} resamples of whole "
            f"{scored} {unit}s, seeded). Binary tasks decide with the threshold each system chose "
            "on its validation windows (maximum balanced accuracy); AUROC and AUC-PR do not "
            "depend on it. Metric definitions: docs/tasks.md."),
        _metrics_table(results, "subjects"),
        *_warnings(results),
        _Paragraph("Mean over folds with the Student-t interval of that mean:"),
        _metrics_table(results, "folds"),
        _Paragraph(f"Per class, on all {scored} windows pooled:"),
        _per_class_table(results),
        *(_Paragraph(f"**Class coverage:** {line}.") for line in class_coverage(first)),
        _Heading("Systems"),
        _system_table(results),
        *_cost_blocks(results),
        *_pretraining_paragraphs(results),
        _Heading("Plots"),
    ]
    per_subject = plot_per_subject(results, first.primary_metric,
                                   out_dir / f"per_subject_{first.primary_metric}.png")
    figures.append(per_subject)
    blocks.append(_Image(per_subject.name, f"{first.primary_metric} per test subject"))
    for result in results:
        slug = _slug(result.system)
        matrix = plot_confusion_matrix(result, out_dir / f"confusion_{slug}.png")
        figures.append(matrix)
        blocks.append(_Image(matrix.name, f"confusion matrix, {result.system}"))
        if result.history_csv and not Path(result.history_csv).is_file():
            blocks.append(_Paragraph(f"Learning curves of {result.system}: its metrics CSV "
                                     f"{result.history_csv} was not found."))
        elif result.history_csv:
            curves = plot_learning_curves(result.history_csv, f"{result.system}: training",
                                          out_dir / f"learning_curves_{slug}.png")
            figures.append(curves)
            blocks.append(_Image(curves.name, f"learning curves, {result.system}"))
        if first.task.get("hypnogram"):
            for recording in sorted(set(result.predictions.recording.tolist())):
                plot = plot_hypnogram(result, recording,
                                      out_dir / f"hypnogram_{slug}_{_slug(recording)}.png")
                figures.append(plot)
                blocks.append(_Image(plot.name, f"hypnogram {recording}, {result.system}"))
    return blocks, figures


def _markdown(blocks: list) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, _Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, _Table):
            cells = [[c.replace("|", "\\|") for c in row] for row in [block.header, *block.rows]]
            lines.append("| " + " | ".join(cells[0]) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
            lines.append("")
        elif isinstance(block, _Image):
            lines += [f"![{block.caption}]({block.path})", ""]
    return "\n".join(lines)


def _html(blocks: list, title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, _Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, _Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, _Image):
            body.append(f'<figure><img src="{html.escape(block.path)}" alt="'
                        f'{html.escape(block.caption)}"><figcaption>{html.escape(block.caption)}'
                        "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:left;font-size:90%}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(results: Sequence[EvaluationResult], out_dir: str | os.PathLike,
                 title: str | None = None) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and the PNG plots for ``results`` into ``out_dir``.

    All results must be on the same task; systems appear in the order given. Raises
    :class:`ConfigError` for an empty list, mixed tasks or repeated system names.
    """
    if not results:
        raise ConfigError("no results to report")
    tasks = sorted({r.task_name for r in results})
    if len(tasks) > 1:
        raise ConfigError(f"results are from several tasks {tasks}; write one report per task")
    systems = [r.system for r in results]
    repeated = sorted({s for s in systems if systems.count(s) > 1})
    if repeated:
        raise ConfigError(f"system name(s) {repeated} appear in more than one result; "
                          "name each system once (e.g. `neurofm evaluate --system NAME`)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or f"neurofm evaluation: {tasks[0]}"
    blocks, figures = _blocks(results, out_dir, title)
    markdown = out_dir / "report.md"
    page = out_dir / "report.html"
    atomic_write_text(markdown, _markdown(blocks))
    atomic_write_text(page, _html(blocks, title))
    return ReportFiles(markdown, page, figures)
