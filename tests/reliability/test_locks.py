"""One writer per output folder: corpus preparation, pretraining, tokenizer training and
fine-tuning refuse a folder another live run holds ("in use by pid N"), a dead run's lock is taken
over, and temp files are removed only when no other holder is alive."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from toy_training import write_tiny_eeg_corpus

from neurofm import locks
from neurofm.cli import main
from neurofm.data.prepare import prepare_corpus
from neurofm.data.preprocess import PreprocessConfig
from neurofm.errors import ConfigError, FolderInUseError
from neurofm.locks import LOCK_NAME, FolderLock, folder_lock, lock_holder

HOLDER = textwrap.dedent("""
    import sys, time
    from neurofm.locks import FolderLock
    lock = FolderLock(sys.argv[1], "test holder").acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


class HeldLock:
    """A child process holding the lock file ``path`` for ``seconds``."""

    def __init__(self, path: Path, seconds: float = 60.0) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"
        self.pid = self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.kill()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- the lock itself


def test_second_lock_in_the_same_process_is_refused_naming_the_pid(tmp_path):
    with FolderLock(tmp_path / LOCK_NAME, "first"), \
            pytest.raises(FolderInUseError, match=f"in use by pid {os.getpid()} \\(first"):
        FolderLock(tmp_path / LOCK_NAME, "second").acquire(wait=None)  # refused, not a deadlock
    FolderLock(tmp_path / LOCK_NAME, "third").acquire().release()


def test_lock_of_another_process_is_refused_and_taken_over_when_it_dies(tmp_path):
    path = tmp_path / LOCK_NAME
    with HeldLock(path) as held:
        holder = lock_holder(path)
        assert holder is not None and holder.pid == held.pid and not holder.is_me()
        with pytest.raises(FolderInUseError) as error:
            FolderLock(path, "second").acquire()
        assert f"{tmp_path} is in use by pid {held.pid}" in str(error.value)
        assert "test holder" in str(error.value)
        held.kill()  # SIGKILL: no cleanup, the lock file stays behind
        assert path.exists() and lock_holder(path) is None
        lock = FolderLock(path, "after").acquire()
        assert lock_holder(path).is_me()
        lock.release()
    assert not path.exists()


def test_acquire_waits_for_a_holder_that_finishes(tmp_path):
    path = tmp_path / LOCK_NAME
    with HeldLock(path, seconds=0.5):
        start = time.monotonic()
        lock = FolderLock(path, "waiter").acquire(wait=30)
        assert time.monotonic() - start < 20
        lock.release()


def test_folder_lock_refuses_a_file_and_removes_a_folder_it_created_empty(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="is an existing file"), folder_lock(tmp_path / "afile", "x"):
        pass
    with folder_lock(tmp_path / "new", "x"):
        assert (tmp_path / "new" / LOCK_NAME).is_file()
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "kept", "x"):
        (tmp_path / "kept" / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["result.json"]


def test_without_fcntl_a_live_pid_file_is_refused_and_a_dead_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_fcntl", None)
    path = tmp_path / LOCK_NAME
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(f'{{"pid": {sleeper.pid}, "host": "{os.uname().nodename}", '
                        '"command": "neurofm prepare"}')
        with pytest.raises(FolderInUseError, match=f"pid {sleeper.pid}.*delete {path}"):
            FolderLock(path, "second").acquire()
        assert lock_holder(path).pid == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert lock_holder(path) is None  # its pid no longer runs
    lock = FolderLock(path, "after").acquire()
    assert lock_holder(path).is_me()
    with pytest.raises(FolderInUseError):
        FolderLock(path, "third").acquire()
    lock.release()
    assert not path.exists()


# --------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def sources(mirror_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for name in ("Subject00_1.edf", "Subject01_1.edf"):
        shutil.copyfile(mirror_dir / "eegmat" / name, folder / name)
    return folder


LABRAM = PreprocessConfig.labram()


def corpus_path(out: Path) -> Path:
    path = out / LABRAM.hash()
    (path / "recordings").mkdir(parents=True, exist_ok=True)
    (path / "manifest").mkdir(exist_ok=True)
    return path


def stale_temp(corpus: Path, name: str = "x.npy") -> Path:
    temp = corpus / "recordings" / f".tmp-{name}.abc123"
    temp.write_bytes(b"partial")
    return temp


def test_second_prepare_is_refused_on_one_line_and_keeps_the_first_runs_temp_file(
        sources, tmp_path, capsys):
    corpus = corpus_path(tmp_path / "out")
    in_flight = stale_temp(corpus, "Subject00_1.npy")
    with HeldLock(corpus / LOCK_NAME) as held:
        code = main(["prepare", str(sources), "--out", str(tmp_path / "out"), "--quiet"])
        err = one_error_line(capsys)
        assert code == 2 and f"is in use by pid {held.pid}" in err and str(corpus) in err
        assert in_flight.exists()
    assert not list((corpus / "manifest").glob("*.json"))


def test_prepare_removes_temp_files_of_killed_runs(sources, tmp_path):
    corpus = corpus_path(tmp_path / "out")
    with HeldLock(corpus / LOCK_NAME) as held:
        temps = [stale_temp(corpus, "a.npy"), corpus / "manifest" / ".tmp-a.json.q1"]
        temps[1].write_text("{")
        held.kill()  # a killed run: its lock and temp files stay behind
    report = prepare_corpus([str(sources)], tmp_path / "out", LABRAM, progress=False,
                            lock_wait=0)
    assert len(report.prepared) == 2
    assert not any(t.exists() for t in temps)
    assert not (corpus / LOCK_NAME).exists()


def test_library_prepare_waits_for_the_run_in_progress(sources, tmp_path):
    corpus = corpus_path(tmp_path / "out")
    with HeldLock(corpus / LOCK_NAME, seconds=1.0):
        report = prepare_corpus([str(sources)], tmp_path / "out", LABRAM, progress=False)
    assert len(report.prepared) == 2


def test_shards_of_one_n_run_side_by_side_others_are_refused(sources, tmp_path):
    out = tmp_path / "out"
    corpus = corpus_path(out)
    temp = stale_temp(corpus)
    with HeldLock(corpus / f"{LOCK_NAME}.shard-0-of-2") as held:
        report = prepare_corpus([str(sources)], out, LABRAM, shard=(1, 2), progress=False,
                                lock_wait=0)
        assert report.shard == (1, 2)
        assert temp.exists()  # shard 0 is alive: its temp files are not ours to delete
        for shard in ((0, 2), (0, 3), None):
            with pytest.raises(FolderInUseError, match=f"pid {held.pid}.*shard 0/2"):
                prepare_corpus([str(sources)], out, LABRAM, shard=shard, progress=False,
                               lock_wait=0)
    prepare_corpus([str(sources)], out, LABRAM, shard=(0, 2), progress=False, lock_wait=0)
    assert not temp.exists()
    assert not list(corpus.glob(f"{LOCK_NAME}*"))


# --------------------------------------------------------------------------- training commands


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_tiny_eeg_corpus(tmp_path_factory.mktemp("corpus"), seconds=8, subjects=2)


@pytest.mark.parametrize("command", [
    ["pretrain", "--objective", "fip", "--model", "neurobert_small"],
    ["tokenizer", "train", "--model", "vqnsp_small"],
])
def test_training_into_a_folder_in_use_is_refused(tiny_corpus, tmp_path, capsys, command):
    run = tmp_path / "run"
    with HeldLock(run / LOCK_NAME) as held:
        code = main([*command, "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                     "run.max_steps=1"])
        err = one_error_line(capsys)
    assert code == 2 and f"{run} is in use by pid {held.pid}" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written


def test_pretrain_lock_is_released_after_the_run(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--objective", "fip", "--model", "neurobert_small", "--quiet",
                 "--corpus", str(tiny_corpus), "--out", str(run), "run.tensorboard=false",
                 "data.batch_size=4", "run.max_steps=1", "data.window_seconds=1",
                 "data.stride_seconds=1"]) == 0
    assert not (run / LOCK_NAME).exists() and (run / "model").is_dir()


def test_torchrun_rank_refuses_a_folder_whose_rank_0_lock_is_another_jobs(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with HeldLock(run / LOCK_NAME) as held:
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")
        with pytest.raises(FolderInUseError, match=f"pid {held.pid}"), \
                locks.run_folder_lock(run, "pretrain"):
            pass
    assert not (run / f"{LOCK_NAME}.rank-1").exists()


def test_finetune_into_a_folder_in_use_is_refused(mirror_dir, tmp_path, capsys):
    subset = tmp_path / "eegmat"
    subset.mkdir()
    for number in range(6):  # one subject per fold
        for part in (1, 2):
            name = f"Subject{number:02d}_{part}.edf"
            shutil.copyfile(mirror_dir / "eegmat" / name, subset / name)
    out = tmp_path / "run"
    with HeldLock(out / LOCK_NAME) as held:
        code = main(["finetune", "--task", "eegmat", "--init", "scratch", "--model",
                     "labram_small", "--corpus", str(tmp_path / "corpora"), "--dataset-dir",
                     str(subset), "--epochs", "1", "--max-folds", "1", "--quiet", "--out",
                     str(out)])
        err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("neurofm finetune: error: ")
    assert f"{out} is in use by pid {held.pid}" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
