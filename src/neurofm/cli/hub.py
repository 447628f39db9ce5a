"""``neurofm export`` and ``neurofm push``: a model as a Hugging Face Hub folder, and its upload."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neurofm.errors import ConfigError

_SOURCE_HELP = ("a neurofm model folder, a LoRA adapter folder (merged into its base), an "
                "official LaBraM .pth or a training checkpoint")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``push`` parsers."""
    export = subparsers.add_parser(
        "export", help="write a model as a Hub-ready folder (config.json, safetensors, model card)",
        description="Write CHECKPOINT as a folder a Hugging Face Hub repository can hold: "
                    "config.json (architecture, input, preprocessing recipe and hash, pretraining "
                    "record), model.safetensors and a generated README.md model card.")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help=_SOURCE_HELP)
    export.add_argument("--out", required=True, metavar="DIR", help="the new folder")
    export.add_argument("--results", default=None, metavar="JSON",
                        help="measured results for the card, a JSON object "
                             "(e.g. '{\"eegmat cv AUROC\": \"0.61 +- 0.03\"}')")
    export.set_defaults(func=run_export)
    push = subparsers.add_parser(
        "push", help="export a model and upload it to the Hugging Face Hub",
        description="Export CHECKPOINT (as `neurofm export`) and upload it to the Hub repository "
                    "REPO (org/name, created when missing) with huggingface_hub; log in first "
                    "(`hf auth login`) or pass --token.")
    push.add_argument("checkpoint", metavar="CHECKPOINT", help=_SOURCE_HELP)
    push.add_argument("repo", metavar="REPO", help="Hub repository id, org/name")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    push.add_argument("--results", default=None, metavar="JSON",
                      help="measured results for the card, a JSON object")
    push.set_defaults(func=run_push)


def _results(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--results is not valid JSON ({error})") from None
    if not isinstance(results, dict):
        raise ConfigError("--results must be a JSON object of measurement -> value")
    return results


def run_export(args: argparse.Namespace) -> int:
    """Export the model and say where it went."""
    from neurofm.hub import export_model

    folder = export_model(args.checkpoint, Path(args.out), results=_results(args.results))
    files = ", ".join(sorted(path.name for path in folder.iterdir()))
    print(f"exported {args.checkpoint} to {folder} ({files})")
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Export and upload the model; print the commit."""
    from neurofm.hub import push_to_hub

    url = push_to_hub(args.checkpoint, args.repo, private=args.private, token=args.token,
                      results=_results(args.results))
    print(f"pushed {args.checkpoint} to {args.repo}: {url}")
    return 0
