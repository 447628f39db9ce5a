"""Shared fixtures: where the shared mirror and golden files are, and a quiet, seeded torch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("NEUROFM_SHARED", REPO_ROOT.parent / "shared"))
MIRROR_DIR = Path(os.environ.get("NEUROFM_MIRROR", SHARED_DIR / "datasets"))
GOLDEN_DIR = SHARED_DIR / "golden" / "labram"

# Tests read the real recordings through the registry's local mirror, never the network.
os.environ.setdefault("NEUROFM_MIRROR", str(MIRROR_DIR))
os.environ.setdefault("NEUROFM_OFFLINE", "1")
# Downloads and checksum memos go to a throwaway cache, never the user's ~/.cache/neurofm.
os.environ.setdefault("NEUROFM_CACHE", tempfile.mkdtemp(prefix="neurofm-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Two cores: under pytest-xdist each worker gets one thread, otherwise both.
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    if not MIRROR_DIR.is_dir():
        pytest.skip(f"dataset mirror not found at {MIRROR_DIR} (set NEUROFM_MIRROR)")
    return MIRROR_DIR


@pytest.fixture(scope="module")
def eegmat_arithmetic(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """eegmat Subject00-02's arithmetic files (1 min each) copied to their own folder and
    prepared for the task: ``(folder, corpus)``."""
    import shutil

    from neurofm.tasks.data import prepare_task_corpus
    from neurofm.tasks.definitions import get_task

    folder = tmp_path_factory.mktemp("eegmat")
    for number in range(3):
        shutil.copyfile(mirror_dir / "eegmat" / f"Subject{number:02d}_2.edf",
                        folder / f"Subject{number:02d}_2.edf")
    corpus, _ = prepare_task_corpus(get_task("eegmat"), folder / "corpora", dataset_dir=folder,
                                    progress=False)
    return folder, corpus


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN_DIR / "manifest.json").is_file():
        pytest.skip(f"golden LaBraM files not found at {GOLDEN_DIR}")
    return GOLDEN_DIR


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
