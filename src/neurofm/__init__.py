"""neurofm: foundation models of EEG and EMG (LaBraM and Neuro-BERT), from recordings to results.

What most users need is importable from here (loaded on first use, so ``import neurofm`` stays
fast)::

    import neurofm

    recording = neurofm.read_recording("sub-01.edf")          # any reader format, in uV
    corpus = neurofm.prepare_corpus(["sub-01.edf"], "corpus/")  # the LaBraM recipe by default
    model = neurofm.from_pretrained("runs/mem/model")          # any checkpoint neurofm reads
    backbone = neurofm.create_model("labram_base")             # a registered architecture
    task = neurofm.get_task("eegmat")
    outcome = neurofm.finetune(task="eegmat", corpus="corpus/", out="runs/ft", init="scratch",
                               model="labram_small")
    result = neurofm.evaluate(task="eegmat", corpus="corpus/")  # the classical baseline

See docs/concepts.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "from_pretrained": "neurofm.loading",
    "PretrainedInfo": "neurofm.loading",
    "create_model": "neurofm.models.registry",
    "list_models": "neurofm.models.registry",
    "read_recording": "neurofm.data.readers",
    "Recording": "neurofm.data.recording",
    "prepare_corpus": "neurofm.data.prepare",
    "Corpus": "neurofm.data.corpus",
    "get_task": "neurofm.tasks.definitions",
    "list_tasks": "neurofm.tasks.definitions",
    "finetune": "neurofm.workflows",
    "evaluate": "neurofm.workflows",
}

__all__ = ["Corpus", "PretrainedInfo", "Recording", "__version__", "create_model", "evaluate",
           "finetune", "from_pretrained", "get_task", "list_models", "list_tasks", "prepare_corpus",
           "read_recording"]

if TYPE_CHECKING:
    from neurofm.data.corpus import Corpus
    from neurofm.data.prepare import prepare_corpus
    from neurofm.data.readers import read_recording
    from neurofm.data.recording import Recording
    from neurofm.loading import PretrainedInfo, from_pretrained
    from neurofm.models.registry import create_model, list_models
    from neurofm.tasks.definitions import get_task, list_tasks
    from neurofm.workflows import evaluate, finetune


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neurofm' has no attribute {name!r}")
