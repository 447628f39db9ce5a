"""Feeding a model input in another unit or sampling rate than it was trained on."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.errors import CheckpointError
from neurofm.models.labram import INPUT_UNIT, SAMPLING_RATE
from neurofm.units import MICROVOLTS_PER_UNIT, scale_factor


class InputConversion(nn.Module):
    """Feeds a model input given in another unit and/or sampling rate.

    ``forward(x [B, C, T], *args, **kwargs)``: multiplies by the unit factor
    (:func:`neurofm.units.scale_factor` to 100 µV), resamples the last axis from ``sfreq`` to 200 Hz by Fourier
    interpolation (T·200/sfreq must be a whole number of 200-sample patches), then calls the model.
    """

    def __init__(self, model: nn.Module, input_unit: str, sfreq: float) -> None:
        super().__init__()
        if input_unit not in MICROVOLTS_PER_UNIT:
            raise CheckpointError(f"cannot convert input declared in {input_unit!r} to {INPUT_UNIT}: "
                                  f"known physical units are {', '.join(MICROVOLTS_PER_UNIT)}")
        if sfreq <= 0:
            raise CheckpointError(f"sampling rate must be positive, got {sfreq}")
        self.model = model
        self.input_unit = input_unit
        self.sfreq = float(sfreq)
        self.scale = scale_factor(input_unit, INPUT_UNIT)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        x = x * self.scale
        if self.sfreq != SAMPLING_RATE:
            x = resample_fourier(x, self.sfreq, SAMPLING_RATE)
        return self.model(x, *args, **kwargs)


def resample_fourier(x: torch.Tensor, sfreq: float, target: float) -> torch.Tensor:
    """Resample the last axis of ``x`` from ``sfreq`` to ``target`` Hz by zero-padding or truncating
    its spectrum (band-limited interpolation, as ``scipy.signal.resample``)."""
    length = x.shape[-1]
    new_length = length * target / sfreq
    if abs(new_length - round(new_length)) > 1e-6:
        raise CheckpointError(f"{length} samples at {sfreq:g} Hz is not a whole number of samples at "
                              f"{target:g} Hz; crop the window to a whole number of seconds")
    new_length = int(round(new_length))
    spectrum = torch.fft.rfft(x.float(), dim=-1)
    bins = new_length // 2 + 1
    if bins <= spectrum.shape[-1]:
        spectrum = spectrum[..., :bins]
    else:
        spectrum = F.pad(spectrum, (0, bins - spectrum.shape[-1]))
    return torch.fft.irfft(spectrum, n=new_length, dim=-1) * (new_length / length)
