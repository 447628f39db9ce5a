"""`neurofm demo --quick` end to end on the real eegmat recordings of the mirror."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.demo import QUICK, STAGES

SYSTEMS = ("LaBraM pretrained (MEM)", "LaBraM scratch", "Neuro-BERT pretrained (FIP)",
           "Neuro-BERT scratch", "bandpower_logreg")


@pytest.fixture(scope="module")
def quick_demo(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--quick", "--quiet", "--out", str(out), "--mirror", str(mirror_dir)]) == 0
    return out, printed.getvalue()


def test_quick_demo_runs_every_stage_and_says_where_its_outputs_are(quick_demo):
    out, printed = quick_demo
    summary = json.loads((out / "demo.json").read_text())
    assert [stage["name"] for stage in summary["stages"]] == list(STAGES)
    assert all(stage["seconds"] > 0 for stage in summary["stages"])
    for position, name in enumerate(STAGES, start=1):
        assert f"[{position}/{len(STAGES)}] {name}:" in printed
    assert str(out / "report" / "report.md") in printed
    assert summary["settings"]["subjects"] == QUICK.subjects


def test_quick_demo_report_compares_pretrained_scratch_and_baseline_with_plots(quick_demo):
    out, printed = quick_demo
    markdown = (out / "report" / "report.md").read_text()
    page = (out / "report" / "report.html").read_text()
    for system in SYSTEMS:
        assert system in markdown and system in page and system in printed
    figures = json.loads((out / "demo.json").read_text())["report"]["figures"]
    assert len(figures) >= len(SYSTEMS) + 1  # a confusion matrix each, per-subject scores
    assert all(Path(path).is_file() and Path(path).stat().st_size > 0 for path in figures)


def test_quick_demo_never_pretrains_on_the_held_out_validation_and_test_subjects(quick_demo):
    out, _printed = quick_demo
    summary = json.loads((out / "demo.json").read_text())
    held_out = set(summary["held_out_subjects"])
    assert held_out == {s for fold in summary["folds"] for part in ("val", "test")
                        for s in fold["groups"][part]}
    pretraining = set(summary["pretraining_subjects"])
    assert {f"eegmat/{s}" for s in held_out}.isdisjoint(pretraining)
    # The other datasets of the mirror pretrain too (all-EEG pretraining).
    assert {s.split("/")[0] for s in pretraining} >= {"eegmat", "eegbci", "dreams_spindles"}
    for corpus_dir in (out / "pretrain_corpus").iterdir():
        subjects = {entry.subject for entry in Corpus(corpus_dir) if entry.id.startswith("eegmat/")}
        assert subjects and not subjects & held_out
    for run in ("tokenizer", "pretrain_mem", "pretrain_fip"):
        split = json.loads((out / run / "split.json").read_text())
        used = {rid.split("/")[1].split("_")[0] for rid in split["train"] + split["val"]
                if rid.startswith("eegmat/")}
        assert used and not used & held_out, run
    # The overlap guard ran on every fine-tuned system and found nothing.
    for system in ("LaBraM pretrained (MEM)", "Neuro-BERT pretrained (FIP)"):
        result = json.loads(next((out / "finetune").glob(
            f"{system.lower().split()[0].replace('-', '_')}*pretrained*/seed0/result.json"))
            .read_text())
        assert result["config"]["overlap"]["applied"] and not result["config"]["overlap"]["overlaps"]


def test_demo_refuses_fewer_subjects_than_a_fold_needs(mirror_dir):
    from neurofm.demo import demo_sources
    from neurofm.errors import DatasetError
    from neurofm.tasks.definitions import get_task

    with pytest.raises(DatasetError, match=r"at least 3 eegmat subjects.*2 were asked for"):
        demo_sources(get_task("eegmat"), 2, mirror=mirror_dir)
