"""A tiny objective, in-memory dataset and corpus for testing the training engine (not a test
module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from neurofm.engine.config import TrainConfig, config_from_dict
from neurofm.objectives.base import ObjectiveOutput


class ToyWindows(Dataset):
    """``n`` random windows ``signal [C, T]`` with a regression target that depends on them."""

    def __init__(self, n: int = 64, channels: int = 3, samples: int = 16, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.signal = torch.randn(n, channels, samples, generator=generator)
        weights = torch.randn(channels * samples, generator=generator)
        self.target = (self.signal.flatten(1) @ weights / 8.0).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.signal)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"signal": self.signal[index], "target": self.target[index],
                "index": torch.tensor(index)}


class ToyObjective(nn.Module):
    """Regress the target from the window; dropout makes the step depend on the torch RNG.

    ``nan_at`` holds forward-call numbers (1-based) whose loss is NaN; ``crash_at`` is a call
    number at which the forward raises, to simulate a run killed mid-training.
    """

    def __init__(self, channels: int = 3, samples: int = 16, hidden: int = 16, dropout: float = 0.1,
                 nan_at: set[int] | None = None, crash_at: int | None = None) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.channel_embed = nn.Embedding(channels, hidden)
        self.proj = nn.Linear(samples, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)
        self.register_buffer("calls_seen", torch.zeros((), dtype=torch.long))
        self.nan_at = set(nan_at or ())
        self.crash_at = crash_at
        self.calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        signal = batch["signal"]
        channels = torch.arange(signal.shape[1], device=signal.device)
        tokens = self.proj(signal) + self.channel_embed(channels)
        tokens = torch.cat([self.cls_token.expand(len(signal), -1, -1), tokens], dim=1)
        features = self.dropout(self.norm(tokens).mean(dim=1))
        prediction = self.head(features)
        loss = nn.functional.mse_loss(prediction, batch["target"])
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        if self.training:
            self.calls_seen += 1
        return ObjectiveOutput(loss=loss, metrics={"mae": (prediction - batch["target"]).abs().mean().detach()})


def toy_config(**sections: dict) -> TrainConfig:
    """A TrainConfig for the toy objective: small batches, no progress bar, no TensorBoard."""
    data = {"model": "toy",
            "optim": {"lr": 1e-2, "min_lr": 1e-4, "epochs": 3, "warmup_epochs": 1.0,
                      "clip_grad_norm": 1.0, "weight_decay": 0.05},
            "data": {"batch_size": 8},
            "run": {"progress": False, "tensorboard": False, "log_every_steps": 1, "keep_last": 2,
                    "device": "cpu"}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    config = config_from_dict(TrainConfig, data)
    config.validate()
    return config


TINY_CORPUS_CHANNELS = ["FP1", "FP2", "C3", "C4", "O1", "O2"]


def write_tiny_eeg_corpus(root: Path, seconds: int = 24, subjects: int = 3, anonymous: int = 0) -> Path:
    """A prepared corpus of ``subjects`` recordings of 6-channel EEG-like rhythms (sines plus noise)
    in 100 uV at 200 Hz, then ``anonymous`` more without a subject id; returns the corpus folder."""
    from neurofm.data.corpus import CorpusWriter, SourceFile
    from neurofm.data.preprocess import PreprocessConfig
    from neurofm.data.recording import Recording

    writer = CorpusWriter(root, PreprocessConfig.labram())
    rng = np.random.default_rng(0)
    t = np.arange(seconds * 200) / 200.0
    n = len(TINY_CORPUS_CHANNELS)
    for subject in range(subjects + anonymous):
        freqs = rng.uniform(4, 20, size=(n, 1))
        signal = np.sin(2 * np.pi * freqs * t) + 0.3 * rng.standard_normal((n, t.size))
        recording = Recording(signal=signal.astype(np.float32), ch_names=list(TINY_CORPUS_CHANNELS),
                              ch_types=["eeg"] * n, sfreq=200.0, unit="100uV",
                              subject=f"s{subject}" if subject < subjects else None, session="1")
        source = root / f"raw{subject}.bin"
        source.write_bytes(bytes([subject]))
        writer.write(f"rec{subject}", recording, [SourceFile.of(source)])
    return writer.path
