"""Models on the Hugging Face Hub: export a folder a Hub repository can hold, push it, load it by id.

An export folder holds ``config.json`` (neurofm's checkpoint format: family, architecture and
sizes, channel vocabulary, input rate and unit, and under ``extra`` the preprocessing recipe with
its hash and the pretraining record), ``model.safetensors`` and a generated ``README.md`` model
card. :func:`neurofm.from_pretrained` takes a Hub id (``"org/name"``, ``"org/name@revision"``)
as it takes a local folder: the three files are fetched through ``huggingface_hub`` into its
cache (with ``HF_HUB_OFFLINE=1``, from the cache alone); nothing else in the repository is
downloaded, so a pickled weights file there is never read.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurofm.errors import CheckpointError, ConfigError

#: A Hub repository id, optionally with a revision: ``org/name`` or ``org/name@revision``.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")
#: The files of an export; with :data:`OPTIONAL_EXPORT_FILES`, the only ones fetched from a Hub
#: repository.
EXPORT_FILES = ("config.json", "model.safetensors", "README.md")
#: Exported when the model has one: a fine-tuned sequence context's weights
#: (``neurofm.tasks.backbones.CONTEXT_WEIGHTS``, read by ``load_task_network``).
OPTIONAL_EXPORT_FILES = ("context.safetensors",)
CARD_FILE = "README.md"


def is_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub id (and is therefore resolved on the Hub when
    no local path of that name exists)."""
    return HUB_ID.fullmatch(source) is not None


def resolve_hub_id(source: str) -> Path:
    """The local snapshot folder of Hub id ``source``, fetched into huggingface_hub's cache (with
    ``HF_HUB_OFFLINE=1``, found there or refused); :class:`CheckpointError` when the repository,
    the revision or one of the export files is missing."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    match = HUB_ID.fullmatch(source)
    if match is None:
        raise ConfigError(f"{source!r} is not a Hub id (org/name or org/name@revision)")
    repo, revision = match["repo"], match["revision"]
    try:
        folder = Path(snapshot_download(repo, revision=revision,
                                             allow_patterns=[*EXPORT_FILES, *OPTIONAL_EXPORT_FILES]))
    except LocalEntryNotFoundError:
        offline = " (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else ""
        raise CheckpointError(f"{source} is not a local path, and the Hub model {repo} is not in "
                              f"the huggingface_hub cache{offline}; download it once online, or "
                              "check the path") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{source} is not a local path, and no Hub repository {repo} exists "
                              "(or it is private: log in with `hf auth login`)") from None
    except HfHubHTTPError as error:
        raise CheckpointError(f"cannot fetch Hub model {source}: {error}") from None
    missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"Hub model {source} lacks {', '.join(missing)}: it is not a neurofm "
                              "export (neurofm loads config.json + model.safetensors with their "
                              "model card, never pickled weights); export it with `neurofm export`")
    return folder


def export_model(source: str | Path, out_dir: str | Path, *,
                 results: Mapping[str, Any] | None = None) -> Path:
    """Write the model of ``source`` (anything :func:`neurofm.from_pretrained` takes; a LoRA
    adapter folder is merged into its base) as a Hub-ready folder ``out_dir``: ``config.json``,
    ``model.safetensors`` and the ``README.md`` model card (``results``: measured scores to state
    in it, e.g. ``{"eegmat cv, AUROC": 0.61}``).

    The folder is written beside ``out_dir`` and renamed into place, so a failed export leaves
    nothing; an existing ``out_dir`` is refused.
    """
    from neurofm.loading import load_source
    from neurofm.models.saved import read_saved_config, save_pretrained

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConfigError(f"--out {out_dir} exists; export into a new folder")
    model, info = load_source(str(source))
    merge = getattr(model, "merge_and_unload", None)
    if callable(merge):  # peft adapters: fold them into the base weights
        model = merge()
    extra: dict[str, Any] = {}
    if info.kind == "neurofm":
        extra = dict(read_saved_config(info.path).get("extra") or {})
    extra.update(exported_from={"source": str(source), "kind": info.kind})
    context_weights = _sequence_context(info, extra)
    recipe = info.preprocessing
    if recipe is not None:
        extra["preprocessing"] = {"recipe": recipe.get("config"), "hash": recipe.get("config_hash")}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_pretrained(model, staging, model_name=info.model, extra=extra)
        if context_weights is not None:
            shutil.copyfile(context_weights, staging / context_weights.name)
        config = read_saved_config(staging)
        (staging / CARD_FILE).write_text(model_card(config, results), encoding="utf-8")
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _sequence_context(info: Any, extra: dict[str, Any]) -> Path | None:
    """The sequence-context weights of the fine-tuned folder ``info.path`` (None without one);
    puts its record (settings and SHA-256) into ``extra`` so that the export reloads with
    ``load_task_network`` as the original does."""
    from neurofm.loading import ADAPTER_SIDECAR
    from neurofm.models.saved import read_saved_config
    from neurofm.tasks.backbones import CONTEXT_WEIGHTS

    folder = Path(str(info.path))
    if not folder.is_dir():
        return None
    sidecar = folder / ADAPTER_SIDECAR
    if sidecar.is_file():
        record = json.loads(sidecar.read_text(encoding="utf-8")).get("context")
    else:
        record = (read_saved_config(folder).get("extra") or {}).get("context")
    if not record or int(record.get("epochs", 1)) <= 1:
        return None
    weights = folder / CONTEXT_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder} records a sequence context but has no {CONTEXT_WEIGHTS}: "
                              "the folder is incomplete; export the fine-tuning run's folder as written")
    extra["context"] = record
    return weights


def push_to_hub(source: str | Path, repo_id: str, *, private: bool = False,
                token: str | None = None, results: Mapping[str, Any] | None = None,
                api: Any = None) -> str:
    """Export ``source`` (:func:`export_model`) and upload it to the Hub repository ``repo_id``
    (created when missing) with ``huggingface_hub``; returns the commit's URL. ``api`` replaces
    ``huggingface_hub.HfApi(token=token)`` (tests pass a local one)."""
    if HUB_ID.fullmatch(repo_id) is None or "@" in repo_id:
        raise ConfigError(f"{repo_id!r} is not a Hub repository id (org/name)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory() as scratch:
        folder = export_model(source, Path(scratch) / "export", results=results)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                       repo_type="model",
                                       commit_message=f"neurofm export of {Path(str(source)).name}")
        except HfHubHTTPError as error:
            raise ConfigError(f"cannot upload to the Hub repository {repo_id}: {error} (log in "
                              "with `hf auth login` or pass --token)") from None
    return str(getattr(commit, "commit_url", commit))


def model_card(config: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> str:
    """A model card (Hub ``README.md``) from an export's ``config.json``: what the model is, the
    input it takes, the data and objective it was trained with, measured results, licence,
    intended use and limits."""
    extra = config.get("extra") or {}
    record = extra.get("pretraining_data") or {}
    name = config.get("model") or config.get("family")
    datasets = sorted({r.get("dataset") or "unknown" for r in record.get("recordings", [])})
    subjects = {r.get("subject") for r in record.get("recordings", []) if r.get("subject")}
    licences = _dataset_licences(datasets)
    preprocessing = extra.get("preprocessing") or {}
    lines = [
        "---", "library_name: neurofm", "tags:", "- eeg", "- neurofm", f"- {config.get('family')}",
        f"license: {'other' if licences else 'unknown'}", "---", "",
        f"# {name}", "",
        (f"A neurofm `{config.get('family')}` network (`{name}` in neurofm's model registry), "
         "exported with `neurofm export`. Load it with `neurofm.from_pretrained(\"ORG/NAME\")`."),
        "", "## Input", "",
        (f"Signals `[batch, channels, time]` in **{config.get('input_unit')}** at "
         f"**{config.get('sfreq'):g} Hz**, cut into patches of {config.get('patch_size')} samples."),
        f"Preprocessing recipe hash: `{preprocessing.get('hash') or 'not recorded'}`.", "",
        "## Training", "",
        f"- Trained by: {extra.get('trained_by') or record.get('trained_by') or 'not recorded'}",
        f"- Steps: {extra.get('step', 'not recorded')} ({extra.get('weights', 'weights')})",
        (f"- Data: {len(record.get('recordings', []))} recordings of {len(subjects)} subjects "
         f"from {', '.join(datasets) if datasets else 'no recorded dataset'}"),
    ]
    if extra.get("task"):
        lines.append(f"- Fine-tuned on task `{extra['task']}` ({extra.get('mode')} mode, "
                     f"{extra.get('fold')}, seed {extra.get('seed')})")
    lines += ["", "## Results", ""]
    if results:
        lines += ["| measurement | value |", "|---|---|",
                  *(f"| {key} | {value} |" for key, value in results.items())]
    else:
        lines.append("No measured results were given at export.")
    lines += [
        "", "## Licence", "",
        "The weights inherit the terms of their training data: "
        + ("; ".join(f"{d}: {lic}" for d, lic in licences.items()) if licences
           else "no dataset licence was recorded."),
        "", "## Intended use and limits", "",
        ("Research on EEG/EMG representation learning: fine-tuning, linear probing and feature "
         "extraction, evaluated subject-wise. Not for clinical diagnosis or any decision about a "
         "person. Accuracy depends on the montage, the hardware and the preprocessing matching "
         "the training data; small models trained on minutes of EEG are demonstrations, not "
         "foundation models."), "",
    ]
    return "\n".join(lines)


def _dataset_licences(datasets: list[str]) -> dict[str, str]:
    from neurofm.datasets.registry import get_dataset
    from neurofm.errors import DatasetError

    licences = {}
    for dataset in datasets:
        try:
            licences[dataset] = get_dataset(dataset).license
        except (DatasetError, ConfigError, KeyError):
            continue
    return licences
