"""Spindle detection reference rows on DREAMS Sleep Spindles: event-level F1 against the experts.

Scores the database's own detector, YASA's ``spindles_detect`` (whole excerpt, and N1-N3 only)
and expert 2 against expert 1, expert 2, their union and the spindles both marked, per excerpt and
pooled, under each overlap criterion asked (``neurofm.tasks.spindles``); no training. Writes
``report.md``, ``spindles.json`` and one figure (60 s of one excerpt with every scoring) to
``--out``::

    python benchmarks/spindles.py --out neurofm-eval/spindles [--iou 0 0.2] [--dataset-dir DIR]

Needs ``neurofm[sleep]`` (yasa) and the excerpts (the registry's mirror or cache, or
``--dataset-dir``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import date
from pathlib import Path

from neurofm.atomic import atomic_write_json, atomic_write_text
from neurofm.tasks.spindles import (
    EXPERT1_SCORED_SECONDS,
    REFERENCES,
    SYSTEMS,
    OverlapCriterion,
    busiest_stretch,
    evaluate_spindles,
    load_dreams_spindle_excerpts,
    plot_spindle_stretch,
)

#: Rows of the figure: label -> scoring or system name.
_FIGURE_ROWS = {"expert 1": "expert1", "expert 2": "expert2", "DREAMS detector": "dreams_detector",
                "YASA": "yasa"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dataset-dir", type=Path, default=None,
                        help="folder holding the DREAMS spindles files (default: the registry's)")
    parser.add_argument("--iou", type=float, nargs="+", default=[0.0, 0.2],
                        help="IoU thresholds, one table each (0 = any overlap)")
    parser.add_argument("--figure-excerpt", default="excerpt1")
    parser.add_argument("--figure-start", type=float, default=None,
                        help="figure start (s); default: the 60 s with the most expert spindles")
    args = parser.parse_args()
    recordings = load_dreams_spindle_excerpts(args.dataset_dir)
    evaluations = [evaluate_spindles(recordings, criterion=OverlapCriterion(t)) for t in args.iou]
    command = shlex.join(["python", "benchmarks/spindles.py", *sys.argv[1:]])
    blocks = [
        "# Spindle detection on DREAMS Sleep Spindles", "",
        (f"Measured {date.today().isoformat()} with `{command}`; excerpts: "
         f"{', '.join(evaluations[0].excerpts)}."), "",
        "Systems: " + "; ".join(f"`{k}` {v}" for k, v in SYSTEMS.items()) + ".", "",
        "References: " + "; ".join(f"`{k}` {v}" for k, v in REFERENCES.items())
        + f". Expert 1 scored the first {EXPERT1_SCORED_SECONDS:g} s only; a comparison keeps the "
        "events that start inside the reference's scored span.", "",
    ]
    for evaluation in evaluations:
        blocks += [f"## {evaluation.criterion.name}", "", evaluation.markdown()]
    notes = list(dict.fromkeys(n for e in evaluations for n in e.notes))
    if notes:
        blocks += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    excerpt = args.figure_excerpt
    if excerpt not in recordings:
        parser.error(f"--figure-excerpt {excerpt!r} is not among {', '.join(recordings)}")
    events = evaluations[0].events
    rows = {label: events[name][excerpt] for label, name in _FIGURE_ROWS.items()
            if excerpt in events.get(name, {})}
    start = args.figure_start
    if start is None:
        start = busiest_stretch([events[n][excerpt] for n in ("expert1", "expert2")
                                 if excerpt in events.get(n, {})])
    figure = plot_spindle_stretch(recordings[excerpt], rows, args.out / f"spindles_{excerpt}.png",
                                  start=start)
    blocks += ["## Figure", "", f"![{excerpt}, 60 s from {start:g} s]({figure.name})", "",
               (f"{excerpt}, 60 s from {start:g} s: the signal, its 11-16 Hz band, and the "
                "spindles of each scoring beneath."), ""]
    atomic_write_json(args.out / "spindles.json", [e.as_dict() for e in evaluations])
    atomic_write_text(args.out / "report.md", "\n".join(blocks))
    for evaluation in evaluations:
        print(f"{evaluation.criterion.name}:")
        for item in evaluation.comparisons:
            f1 = item.pooled.f1
            print(f"  {item.system} vs {item.reference}: pooled F1 "
                  f"{'n/a' if f1 is None else f'{f1:.3f}'}")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
