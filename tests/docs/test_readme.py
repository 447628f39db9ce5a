"""Every command in README.md runs: the fenced bash and python blocks, in order, in one scratch folder.

The README shows the commands a user types. Documented substitutions make them CI-sized
(:data:`SUBSTITUTIONS`), `labram-base.pth` points at the official file of the golden set,
`my_recordings/` holds four real eegmat EDF files from the mirror, and the tasks read a mirror
holding the first six eegmat subjects (copies of the shared mirror's files, verified by the
registry like any mirror), so fine-tuning and evaluation run on half the recordings. A block preceded by
``<!-- docs-test: skip (reason) -->`` is not run; only the few in :data:`ALLOWED_SKIPS` may be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

# What the docs test may skip, by the command the block starts with, and why.
ALLOWED_SKIPS = {
    "pip install": "CI runs the install command itself (.ci/run) in a fresh environment",
    "pytest": "the test command is what runs this test",
    "neurofm demo": "the full demo takes about 10 minutes; tests/test_demo.py runs it with --quick",
    "torchrun": "needs GPUs or several machines; tests/engine/test_distributed.py runs two CPU ranks",
}
# README text -> what the test runs instead (the README names both).
SUBSTITUTIONS = {
    "data.batch_size=32": "data.batch_size=8",
    "run.max_steps=2000": "run.max_steps=2",
    "--epochs 10": "--epochs 1 --max-folds 1 --bootstrap 100",
    "--out runs/eegmat-baseline": "--out runs/eegmat-baseline --bootstrap 100",
}
FENCE = re.compile(r"(?P<marker><!-- docs-test: skip \((?P<reason>[^)]*)\) -->\n)?"
                   r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.DOTALL)
RECORDINGS = ("Subject00_1.edf", "Subject00_2.edf", "Subject01_1.edf", "Subject01_2.edf")
TASK_SUBJECTS = 6


def readme_blocks() -> list[dict[str, str | None]]:
    """The fenced blocks of the README in order: language, body, skip reason (or None)."""
    return [{"lang": m["lang"], "body": m["body"], "skip": m["reason"]}
            for m in FENCE.finditer(README.read_text(encoding="utf-8"))]


def _ci_commands() -> list[str]:
    lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip().startswith(("pip install", "pytest"))]


def _runnable(block: dict[str, str | None], golden_weights: Path) -> str:
    body = str(block["body"])
    for text, replacement in SUBSTITUTIONS.items():
        body = body.replace(text, replacement)
    return body.replace("labram-base.pth", str(golden_weights))


def test_every_block_is_bash_or_python_and_only_the_allowed_ones_are_skipped():
    blocks = readme_blocks()
    assert blocks and all(block["lang"] in ("bash", "python") for block in blocks)
    skipped = [block for block in blocks if block["skip"] is not None]
    assert len(skipped) <= len(ALLOWED_SKIPS)
    for block in skipped:
        command = str(block["body"]).strip()
        assert block["lang"] == "bash" and block["skip"].strip(), command
        assert any(command.startswith(prefix) for prefix in ALLOWED_SKIPS), (
            f"skipped README block is not an allowed skip: {command!r}")


def test_install_and_test_commands_are_the_ones_ci_runs():
    commands = [str(block["body"]).strip() for block in readme_blocks()]
    assert _ci_commands() == ['pip install -e ".[dev]" && pip install --no-deps "braindecode==1.8.1"',
                             "pytest -n 2"]
    for command in _ci_commands():
        assert command in commands


def test_every_substitution_applies_to_a_command_the_readme_shows():
    runnable = "".join(str(block["body"]) for block in readme_blocks() if block["skip"] is None)
    for text in SUBSTITUTIONS:
        assert text in runnable, f"the README no longer contains {text!r}; update SUBSTITUTIONS"
    assert "labram-base.pth" in runnable


def test_readme_commands_run_in_order(mirror_dir: Path, golden_dir: Path, tmp_path: Path):
    import json

    manifest = json.loads((golden_dir / "manifest.json").read_text())
    weights = golden_dir / manifest["weights"]["labram-base.pth"]["path"]
    recordings = tmp_path / "my_recordings"
    recordings.mkdir()
    for name in RECORDINGS:
        (recordings / name).symlink_to(mirror_dir / "eegmat" / name)
    small_mirror = tmp_path / "mirror" / "eegmat"
    small_mirror.mkdir(parents=True)
    for subject in range(TASK_SUBJECTS):
        for part in (1, 2):
            name = f"Subject{subject:02d}_{part}.edf"
            shutil.copyfile(mirror_dir / "eegmat" / name, small_mirror / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MPLBACKEND": "Agg", "NEUROFM_MIRROR": str(small_mirror.parent),
           # One thread per command, as the test workers use: two OpenMP threads on a busy
           # 2-core machine spend most of their time waiting for each other.
           "OMP_NUM_THREADS": "1"}
    for block in readme_blocks():
        if block["skip"] is not None:
            continue
        code = _runnable(block, weights)
        command = ["bash", "-euo", "pipefail", "-c", code] if block["lang"] == "bash" else [
            sys.executable, "-c", code]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        print(f"{time.perf_counter() - started:5.1f} s  {code.splitlines()[0]}")
        if done.returncode != 0:
            pytest.fail(f"README block failed (exit {done.returncode}):\n{code}\n--- stdout\n"
                        f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    # What the tour promises to leave behind.
    for path in ("runs/tokenizer/model", "runs/labram/model", "runs/neurobert/model",
                 "runs/eegmat-labram/results.json", "runs/eegmat-report/report.html",
                 "features.npy", "runs/api-fip/model"):
        assert (tmp_path / path).exists(), path
