"""Training metrics to a CSV file and to TensorBoard, written by rank 0 only.

The CSV is long-format (``step, epoch, split, name, value, wall_time``) so that a metric can
appear at any time without rewriting the header. On resume, rows logged after the checkpoint
the run continues from (by a run that was killed later) are dropped, so the file holds exactly
one value per (step, split, name), as an uninterrupted run would have written.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping
from pathlib import Path

from neurofm.atomic import atomic_write_text

CSV_COLUMNS = ("step", "epoch", "split", "name", "value", "wall_time")


class MetricsLogger:
    """Append scalar metrics to ``<run>/metrics.csv`` and ``<run>/tensorboard/``.

    Args:
        run_dir: the run folder.
        enabled: False on ranks other than 0 (every call is then a no-op).
        tensorboard: also write TensorBoard event files.
        resume_step: when resuming from a checkpoint at this optimizer step, drop CSV rows of later
            steps and tell TensorBoard to purge its later events.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.csv_path = Path(run_dir) / "metrics.csv"
        self._writer = None
        self._handle = None
        if not enabled:
            return
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.csv_path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.csv_path.exists():
            # A fresh run in an existing folder starts a fresh log.
            self.csv_path.unlink()
        new_file = not self.csv_path.exists()
        # Held open for the run and closed by close(): no with-block can span it.
        self._handle = open(self.csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._handle)
        if new_file:
            self._csv.writerow(CSV_COLUMNS)
            self._handle.flush()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                         purge_step=purge)

    def log(self, step: int, epoch: int, split: str, metrics: Mapping[str, float]) -> None:
        """Record scalar ``metrics`` of ``split`` ("train", "val", ...) at optimizer ``step``."""
        if not self.enabled:
            return
        now = time.time()
        for name, value in metrics.items():
            value = float(value)
            self._csv.writerow((step, epoch, split, name, repr(value), f"{now:.3f}"))
            if self._writer is not None and math.isfinite(value):
                self._writer.add_scalar(f"{split}/{name}", value, global_step=step)
        assert self._handle is not None  # open while enabled, until close()
        self._handle.flush()

    def close(self) -> None:
        """Flush and close the CSV file and the TensorBoard writer."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _truncate_after(self, step: int) -> None:
        with open(self.csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= step]
        buffer = io.StringIO()
        csv.writer(buffer).writerows(kept)
        atomic_write_text(self.csv_path, buffer.getvalue())


def read_metrics(path: str | Path, split: str | None = None, name: str | None = None
                 ) -> list[tuple[int, str, str, float]]:
    """Rows ``(step, split, name, value)`` of a metrics CSV, optionally filtered."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [
            (int(row["step"]), row["split"], row["name"], float(row["value"]))
            for row in reader
            if (split is None or row["split"] == split) and (name is None or row["name"] == name)
        ]
