"""Run every benchmark in one process and append its table to docs/benchmarks.md.

Usage::

    python benchmarks/run.py            # full suite
    python benchmarks/run.py --quick    # smaller shapes and fewer steps, for smoke checks
    python benchmarks/run.py --only models data
    python benchmarks/run.py --compile  # also the torch.compile rows (minutes of compiling)
    python benchmarks/run.py --only official --official ~/LaBraM --official-deps /tmp/labram_deps
        # side by side with the official LaBraM code (see bench_official.py)

Each ``benchmarks/bench_<area>.py`` exposes ``run(quick: bool = False) -> list[dict]``; a row holds
the figure, its unit, the reference it is compared with (measured in the same run), and the
target. The machine description and matmul rates come from ``benchmarks/reference.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AREAS = ("data", "models", "neurobert", "engine", "finetune", "official")
COLUMNS = ("benchmark", "value", "unit", "reference", "reference_value", "target", "note")


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def render_table(rows: list[dict]) -> str:
    """A Markdown table of benchmark rows."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_format(row.get(column)).replace("|", "/") for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few steps")
    parser.add_argument("--only", nargs="*", choices=AREAS, help="run only these areas")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile (model and side-by-side benchmarks)")
    parser.add_argument("--official", type=Path, metavar="PATH",
                        help="a clone of the official LaBraM repository, timed side by side")
    parser.add_argument("--official-deps", type=Path, metavar="DIR",
                        help="a scratch target holding the official code's timm 0.4.12")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    reference = importlib.import_module("reference")

    started = time.time()
    machine = reference.describe_machine()
    rows: list[dict] = list(reference.run(quick=args.quick))
    failures: list[str] = []
    for area in args.only or AREAS:
        try:
            module = importlib.import_module(f"bench_{area}")
        except ImportError as error:
            failures.append(f"{area}: not importable ({error})")
            continue
        try:
            options: dict[str, object] = {"use_compile": True} if args.compile and area == "models" else {}
            if area == "official":
                options = {"official_path": args.official, "official_deps": args.official_deps,
                           "use_compile": args.compile}
            rows.extend(module.run(quick=args.quick, **options))
        except Exception:  # a failing area must not hide the others' figures
            failures.append(f"{area}: failed\n{traceback.format_exc()}")
    table = render_table(rows)
    ratio_lines = "".join(f"    {row['line']}\n" for row in rows if row.get("line"))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## {stamp}{' (quick)' if args.quick else ''}\n\n"
        f"Machine: {machine}\n\n{table}\n\n"
        + (f"{ratio_lines}\n" if ratio_lines else "")
        + f"Run time: {time.time() - started:.0f} s.\n"
    )
    if failures:
        section += "\nNot measured in this run:\n\n" + "\n".join(
            f"- {line.splitlines()[0]}" for line in failures
        ) + "\n"
    print(section)
    for failure in failures:
        print(failure, file=sys.stderr)
    if not args.no_write:
        target = ROOT / "docs" / "benchmarks.md"
        if not target.exists():
            target.write_text(
                "# Benchmarks\n\nEvery table below was produced by `python benchmarks/run.py` "
                "on the machine it names; references were measured in the same run.\n"
            )
        with target.open("a") as handle:
            handle.write(section)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
