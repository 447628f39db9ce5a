"""The side-by-side benchmark's set-up checks (benchmarks/bench_official.py); timing is not tested."""

from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
bench_official = importlib.import_module("bench_official")


def test_without_official_path_the_ratios_are_absent_and_the_row_says_why() -> None:
    (row,) = bench_official.run(quick=True)
    assert math.isnan(row["value"])
    assert "--official PATH" in row["note"] and "timm 0.4.12" in row["note"]


def test_a_folder_that_is_not_the_official_clone_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "modeling_pretrain.py").write_text("")
    missing = re.escape("modeling_finetune.py, modeling_vqnsp.py missing")
    with pytest.raises(bench_official.OfficialCodeError, match=missing):
        bench_official.load_official(tmp_path)


def test_the_ratio_line_has_the_checkable_form() -> None:
    line = bench_official.side_by_side_line("mem", "bf16", 2.345, "amx")
    assert line == "side-by-side mem bf16: 2.35x official (amx)"
    assert bench_official.cpu_tag() in {"amx", "avx512_bf16", "avx2"} or not bench_official.cpu_tag().islower()


def test_official_channel_indices_put_the_class_token_first() -> None:
    chans = bench_official._official_input_chans()
    assert chans[0] == 0 and len(chans) == 20 and min(chans[1:]) >= 1


def test_on_a_gpu_neurofm_bf16_meets_the_official_mixed_precision_and_on_a_cpu_its_fp32() -> None:
    assert bench_official._official_variants("cuda", ["fp32", "bf16"]) == {"fp32": "fp32", "bf16": "amp"}
    assert bench_official._official_variants("cpu", ["fp32", "bf16"]) == {"fp32": "fp32", "bf16": "fp32"}


def test_the_counted_flops_of_a_step_are_its_matrix_products() -> None:
    weight = torch.randn(8, 16, requires_grad=True)
    inputs = torch.randn(4, 16)

    def step() -> None:
        (inputs @ weight.T).sum().backward()

    # forward 2*4*16*8, backward of the weight gradient the same (the input needs none)
    assert bench_official._count_flops(step) == 2 * (2 * 4 * 16 * 8)
