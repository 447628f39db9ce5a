"""Per-window features of a pretrained backbone, for users who bring their own classifier.

A recording file (prepared on the fly with a preprocessing recipe into a temporary corpus) or a
prepared corpus is cut into windows (:class:`~neurofm.data.windows.WindowDataset`), each window
goes through the backbone in eval mode, and its pooled feature (the fine-tuning head's input:
LaBraM ``fc_norm(mean of patch tokens)``, Neuro-BERT ``LayerNorm(mean of tokens)``) is kept::

    embeddings = embed_corpus("ckpt/", "corpus/", window_seconds=10.0)
    save_embeddings(embeddings, "features.parquet")   # + features.npy and features.json

The ``.npy`` file holds float32 ``[N, D]``; its JSON sidecar says, per row, the window id, the
recording, the subject and the start in seconds, and which model, windows and precision produced
the features. With pyarrow installed a ``.parquet`` table holds the same rows (one column per
feature, ``f000``...).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.data.batching import ShapeGroupedBatchSampler, collate_windows
from neurofm.data.corpus import Corpus
from neurofm.data.windows import WindowDataset
from neurofm.engine.distributed import resolve_device
from neurofm.errors import ConfigError
from neurofm.loading import load_source
from neurofm.models.backbone import as_backbone
from neurofm.tasks.backbones import TaskNetwork
from neurofm.tasks.definitions import PREPROCESSING_RECIPES

Precision = Literal["auto", "fp32", "bf16"]
EMBEDDINGS_FORMAT = "neurofm-embeddings"


@dataclass
class Embeddings:
    """Features of every window, with where each window came from.

    Attributes:
        features: float32 ``[N, D]``.
        window: int ``[N]`` window index in the window dataset.
        recording: str ``[N]`` corpus recording id.
        subject: str ``[N]`` the recording's subject (``""`` when unknown).
        start_seconds: float ``[N]`` window start from the recording's start.
        info: the model, the windows (seconds, stride, rate, unit) and the precision.
    """

    features: np.ndarray
    window: np.ndarray
    recording: np.ndarray
    subject: np.ndarray
    start_seconds: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def load_embedding_model(checkpoint: str) -> tuple[TaskNetwork, dict[str, Any]]:
    """The network whose features are embedded: any source :func:`neurofm.from_pretrained`
    takes that holds a backbone (a LoRA adapter folder: base with adapters)."""
    model, info = load_source(checkpoint, backbone=True, n_outputs=0)
    if info.kind == "adapters":
        return TaskNetwork(model).eval(), {"init": checkpoint, "source": info.kind,
                                           "path": info.path}
    return TaskNetwork(as_backbone(model, checkpoint)).eval(), {
        "init": checkpoint, "source": info.kind, "path": info.path, "model": info.model}


def autocast_context(device: torch.device, precision: Precision
                     ) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, or under ``"auto"`` on CUDA; full fp32 otherwise."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolved_precision(device: torch.device, precision: Precision) -> str:
    """The precision :func:`autocast_context` uses: ``"bf16"`` or ``"fp32"``."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return "bf16" if use_bf16 else "fp32"


def embed_windows(network: nn.Module, dataset: WindowDataset, batch_size: int = 64,
                  device: torch.device | str = "cpu", precision: Precision = "auto",
                  progress: bool = False) -> np.ndarray:
    """Pooled features float32 ``[N, D]`` of every window of ``dataset``, in dataset order.

    Windows are batched by channel set (no padding) and run in eval mode without gradients.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    network = network.to(device).eval()
    sampler = ShapeGroupedBatchSampler(dataset.channel_set_ids(), batch_size, shuffle=False,
                                       num_replicas=1, rank=0)
    features: np.ndarray | None = None
    with torch.no_grad(), autocast_context(device, precision):
        for indices in tqdm(list(sampler), desc="embed", unit="batch", disable=not progress):
            batch = collate_windows([dataset[i] for i in indices])
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            out = network.features(batch).float().cpu().numpy()
            if features is None:
                features = np.empty((len(dataset), out.shape[1]), dtype=np.float32)
            features[indices] = out
    if features is None:
        raise ConfigError("no windows to embed: the recordings are shorter than one window")
    return features


def embed_corpus(checkpoint: str, corpus: Corpus | str | os.PathLike, window_seconds: float = 4.0,
                 stride_seconds: float | None = None, recording_ids: list[str] | None = None,
                 batch_size: int = 64, device: str = "auto", precision: Precision = "auto",
                 progress: bool = False) -> Embeddings:
    """Embed every window of a prepared corpus with the model of ``checkpoint``.

    Windows of ``window_seconds`` start every ``stride_seconds`` (default: no overlap) in each
    recording (or ``recording_ids``). Raises :class:`ConfigError` when the windows do not suit
    the model (rate, length).
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    dataset = WindowDataset(corpus, window_seconds, stride_seconds, recording_ids=recording_ids)
    if len(dataset) == 0:
        raise ConfigError(f"corpus {corpus.path} has no recording of at least {window_seconds} s; "
                          "use shorter windows (--window-seconds)")
    network, info = load_embedding_model(checkpoint)
    units = sorted({corpus[rid].unit for rid in dataset.recording_ids})
    if network.base.uses_channel_vocabulary:
        unmapped = [rid for rid in dataset.recording_ids
                    if corpus[rid].vocabulary_indices is None]
        if unmapped:
            raise ConfigError(
                f"{network.family} needs EEG channels named in the LaBraM vocabulary, but {len(unmapped)} "
                f"recording(s) of {corpus.path} have channels it cannot place (e.g. "
                f"{unmapped[0]!r}: {list(corpus[unmapped[0]].channels)}); rename or drop them "
                "when preparing the corpus")
    network.base.check_input(dataset.sfreq, dataset.window_length, units[0],
                             f"corpus {corpus.path}")
    target = resolve_device(device)
    features = embed_windows(network, dataset, batch_size, target, precision, progress)
    recording = np.asarray(dataset.recording_ids, dtype=str)[dataset.window_recording]
    return Embeddings(
        features=features,
        window=np.arange(len(dataset), dtype=np.int64),
        recording=recording,
        subject=np.asarray(dataset.window_subjects(), dtype=str),
        start_seconds=dataset.window_start / dataset.sfreq,
        info={"checkpoint": checkpoint, "model": info, "family": network.family,
              "feature_dim": int(features.shape[1]), "window_seconds": window_seconds,
              "stride_seconds": stride_seconds if stride_seconds is not None else window_seconds,
              "sfreq": dataset.sfreq, "units": units, "corpus": str(corpus.path),
              "precision": resolved_precision(target, precision), "device": str(target)},
    )


def embed_recording(checkpoint: str, recording: str | os.PathLike, recipe: str = "labram",
                    **kwargs: Any) -> Embeddings:
    """Embed one recording file (any format the readers take): it is prepared with the
    preprocessing ``recipe`` (``"labram"``: 0.1-75 Hz, notch, 200 Hz, 100 µV; ``"emg"``) into a
    temporary corpus, then embedded as :func:`embed_corpus` (``kwargs`` are passed on)."""
    from neurofm.data.prepare import prepare_corpus

    if recipe not in PREPROCESSING_RECIPES:
        raise ConfigError(f"unknown preprocessing recipe {recipe!r}; known: "
                          f"{', '.join(sorted(PREPROCESSING_RECIPES))}")
    path = Path(recording)
    if not path.exists():
        raise ConfigError(f"recording {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="neurofm-embed-") as scratch:
        report = prepare_corpus([str(path)], scratch, PREPROCESSING_RECIPES[recipe](),
                                progress=False)
        if report.failed or not report.prepared:
            reason = report.failed[0].message if report.failed else "nothing was prepared"
            raise ConfigError(f"cannot embed {path}: {reason}")
        embeddings = embed_corpus(checkpoint, report.corpus_dir, **kwargs)
    embeddings.info.update(recording_file=str(path), recipe=recipe)
    embeddings.info.pop("corpus", None)
    return embeddings


def save_embeddings(embeddings: Embeddings, out: str | os.PathLike) -> list[Path]:
    """Write ``out.npy`` (features) and ``out.json`` (rows and settings); for ``out.parquet``
    also the Parquet table (needs pyarrow). Returns the written paths."""
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise ConfigError(f"--out {out}: the output must end in .npy or .parquet")
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("writing .parquet needs pyarrow (pip install pyarrow); or write "
                              f"{out.with_suffix('.npy')} instead") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    npy = out.with_suffix(".npy")
    with atomic_path(npy) as tmp, open(tmp, "wb") as handle:
        np.save(handle, embeddings.features.astype(np.float32))
    written.append(npy)
    sidecar = out.with_suffix(".json")
    atomic_write_json(sidecar, {
        "format": EMBEDDINGS_FORMAT,
        "features_file": npy.name,
        "shape": list(embeddings.features.shape),
        **embeddings.info,
        "rows": {"window": embeddings.window.tolist(),
                 "recording": embeddings.recording.tolist(),
                 "subject": embeddings.subject.tolist(),
                 "start_seconds": embeddings.start_seconds.tolist()},
    })
    written.append(sidecar)
    if out.suffix == ".parquet":
        columns = {"window": embeddings.window, "recording": embeddings.recording,
                   "subject": embeddings.subject, "start_seconds": embeddings.start_seconds}
        width = len(str(embeddings.features.shape[1] - 1))
        for k in range(embeddings.features.shape[1]):
            columns[f"f{k:0{max(width, 3)}d}"] = embeddings.features[:, k]
        table = pa.table(columns, metadata={"neurofm": json.dumps(
            {"format": EMBEDDINGS_FORMAT, **embeddings.info}, default=str)})
        with atomic_path(out) as tmp:
            pq.write_table(table, str(tmp))
        written.append(out)
    return written
