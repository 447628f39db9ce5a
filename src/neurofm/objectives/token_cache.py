"""Token targets computed once per corpus window and reused in every later epoch.

The VQ-NSP tokenizer is frozen during masked-EEG pretraining, so a window's targets never change;
computing them costs about a sixth of a training step (issue 11). :class:`TokenTargetCache` keeps
them keyed by the window's global index (``batch["index"]``) under the tokenizer's fingerprint:
a changed tokenizer has another fingerprint, so its targets are never served from a stale cache.

Each entry also records the window's vocabulary channel indices and a checksum of its signal; an
entry whose channels or signal differ from the batch (a re-prepared corpus, a random crop) is
recomputed instead of served. The cache persists as one safetensors file per fingerprint and rank
(``tokens-<fingerprint>-rank<r>.safetensors``), written atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from neurofm.atomic import atomic_path


def tokenizer_fingerprint(tokenizer: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over the tokenizer's state dict: names, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _signal_checksum(rows: torch.Tensor) -> torch.Tensor:
    values = rows.detach().double()
    return torch.stack((values.sum(), values.square().sum())).cpu()


class TokenTargetCache:
    """Token ids per window index, for one tokenizer fingerprint.

    Args:
        fingerprint: identifies the tokenizer (see :func:`tokenizer_fingerprint`).
        directory: where to persist the cache (None keeps it in memory only).
        rank: process rank under DDP (each rank writes its own file; all are read).
        flush_every: write to disk after this many new entries (0: only on :meth:`save`).
    """

    def __init__(self, fingerprint: str, directory: str | Path | None = None, rank: int = 0,
                 flush_every: int = 0) -> None:
        self.fingerprint = fingerprint
        self.directory = Path(directory) if directory is not None else None
        self.rank = rank
        self.flush_every = flush_every
        self._entries: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._unsaved = 0
        self.hits = 0
        self.misses = 0
        if self.directory is not None:
            for path in sorted(self.directory.glob(f"tokens-{fingerprint}-rank*.safetensors")):
                self._load(path)

    def __len__(self) -> int:
        return len(self._entries)

    def targets(self, batch: dict[str, torch.Tensor], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Token ids ``[B, C·A]`` for the batch: served from the cache when every window is cached
        and unchanged, otherwise ``compute()`` (the tokenizer on this batch) and stored."""
        signal, channel_index = batch["signal"], batch["channel_index"]
        batch_size, n_chans = channel_index.shape
        n_patches = signal.shape[-1] // 200
        channel_mask = batch.get("channel_mask")
        if channel_mask is None:
            channel_mask = torch.ones(batch_size, n_chans, dtype=torch.bool, device=signal.device)
        indices = batch["index"].tolist()
        cached = self._lookup(indices, signal, channel_index, channel_mask, n_patches)
        if cached is not None:
            self.hits += batch_size
            return cached.to(signal.device)
        self.misses += batch_size
        tokens = compute()
        self._store(indices, signal, channel_index, channel_mask, tokens.reshape(batch_size, n_chans, n_patches))
        return tokens

    def _lookup(self, indices, signal, channel_index, channel_mask, n_patches):
        batch_size, n_chans = channel_index.shape
        out = torch.full((batch_size, n_chans, n_patches), -1, dtype=torch.long)
        for row, window in enumerate(indices):
            entry = self._entries.get(window)
            if entry is None:
                return None
            tokens, channels, checksum = entry
            real = channel_mask[row]
            if (tokens.shape[1] != n_patches or not torch.equal(channels, channel_index[row][real].cpu())
                    or not torch.allclose(checksum, _signal_checksum(signal[row][real]), rtol=1e-9, atol=1e-9)):
                return None
            out[row, real.cpu()] = tokens.long()
        return out.reshape(batch_size, n_chans * n_patches)

    def _store(self, indices, signal, channel_index, channel_mask, tokens):
        for row, window in enumerate(indices):
            real = channel_mask[row]
            self._entries[window] = (tokens[row][real].to(torch.int16).cpu(),
                                     channel_index[row][real].cpu(), _signal_checksum(signal[row][real]))
        self._unsaved += len(indices)
        if self.flush_every and self._unsaved >= self.flush_every:
            self.save()

    def save(self) -> Path | None:
        """Write this rank's entries to ``directory`` (atomically); returns the file written."""
        if self.directory is None or not self._entries:
            return None
        windows = sorted(self._entries)
        tokens = [self._entries[w][0] for w in windows]
        tensors = {
            "index": torch.tensor(windows, dtype=torch.long),
            "n_chans": torch.tensor([t.shape[0] for t in tokens], dtype=torch.long),
            "n_patches": torch.tensor([t.shape[1] for t in tokens], dtype=torch.long),
            "tokens": torch.cat([t.reshape(-1) for t in tokens]),
            "channels": torch.cat([self._entries[w][1] for w in windows]),
            "checksums": torch.stack([self._entries[w][2] for w in windows]),
        }
        target = self.directory / f"tokens-{self.fingerprint}-rank{self.rank}.safetensors"
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp), metadata={"fingerprint": self.fingerprint})
        self._unsaved = 0
        return target

    def _load(self, path: Path) -> None:
        tensors = load_file(str(path))
        token_offset = channel_offset = 0
        for window, n_chans, n_patches, checksum in zip(
                tensors["index"].tolist(), tensors["n_chans"].tolist(), tensors["n_patches"].tolist(),
                tensors["checksums"]):
            size = n_chans * n_patches
            tokens = tensors["tokens"][token_offset:token_offset + size].reshape(n_chans, n_patches)
            channels = tensors["channels"][channel_offset:channel_offset + n_chans]
            self._entries[window] = (tokens, channels, checksum)
            token_offset += size
            channel_offset += n_chans
