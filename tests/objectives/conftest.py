"""Toy signals shared by the objective tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch

SineToy = Callable[[torch.Generator], dict[str, torch.Tensor]]


@pytest.fixture
def sine_plus_noise() -> SineToy:
    """Batches of a 10 Hz sine (0.3 rad at the window start) plus white noise at 10% amplitude.

    16 samples x 2 channels x 320 samples at 200 Hz (8 patches of 40). The sine makes exactly
    two cycles per patch, so its energy sits in rfft bin 2 at the same phase in every patch. The
    z-scored noise floor of a masked-patch MSE is about 0.02; predicting zeros scores about 1.
    """

    def make(generator: torch.Generator) -> dict[str, torch.Tensor]:
        time = torch.arange(320) / 200.0
        signal = torch.sin(2 * math.pi * 10.0 * time + 0.3).expand(16, 2, 320)
        signal = signal + 0.1 * torch.randn(16, 2, 320, generator=generator)
        return {"signal": signal, "channel_mask": torch.ones(16, 2, dtype=torch.bool)}

    return make


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run on one thread: tiny training loops only lose to thread hand-offs on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
