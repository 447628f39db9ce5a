"""``neurofm embed``: per-window features of a recording or a corpus, for your own classifier.

Thin over :mod:`neurofm.tasks.embed`.
"""

from __future__ import annotations

import argparse

from neurofm.cli import count, positive_number
from neurofm.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` parser."""
    parser = subparsers.add_parser(
        "embed",
        help="per-window features of a recording or corpus (NumPy + JSON, or Parquet)",
        description=(
            "Cut a recording file (prepared on the fly with a preprocessing recipe) or a "
            "prepared corpus into windows and write each window's pooled feature from a "
            "pretrained backbone: OUT.npy (float32 [windows, features]) and OUT.json (window id, "
            "recording, subject and start time of every row, and the settings); with an OUT "
            "ending in .parquet also a Parquet table (needs pyarrow). Runs in eval mode; bf16 "
            "autocast on CUDA unless --precision fp32."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a neurofm checkpoint folder, a training checkpoint (.pt), an "
                             "official LaBraM .pth (official:PATH), or a LoRA adapter folder")
    parser.add_argument("recording", nargs="?", default=None, metavar="RECORDING_FILE",
                        help="a recording in any format the readers take (EDF, BDF, FIF...)")
    parser.add_argument("--corpus", default=None, metavar="DIR",
                        help="a prepared corpus (neurofm prepare) instead of a recording file")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output: FILE.npy, or FILE.parquet (also writes FILE.npy)")
    parser.add_argument("--window-seconds", type=positive_number, default=4.0, metavar="S",
                        help="window length in seconds (default 4; LaBraM takes 1 to 16)")
    parser.add_argument("--stride-seconds", type=positive_number, default=None, metavar="S",
                        help="distance between window starts (default: the window length)")
    parser.add_argument("--recipe", choices=("labram", "emg"), default="labram",
                        help="preprocessing of a recording file (default labram: 0.1-75 Hz, "
                             "notch, 200 Hz, 100 uV)")
    parser.add_argument("--batch-size", type=count, default=64, metavar="N",
                        help="windows per forward pass (default 64)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (default: CUDA when available)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Embed and write the features; print their shape and where they went."""
    from neurofm.tasks.embed import embed_corpus, embed_recording, save_embeddings

    if (args.recording is None) == (args.corpus is None):
        raise ConfigError("give either a RECORDING_FILE or --corpus DIR (exactly one)")
    if args.corpus is not None and args.recipe != "labram":
        raise ConfigError("--recipe applies to a recording file; a corpus is already prepared")
    if not str(args.out).endswith((".npy", ".parquet")):
        raise ConfigError(f"--out {args.out}: the output must end in .npy or .parquet")
    options = dict(window_seconds=args.window_seconds, stride_seconds=args.stride_seconds,
                   batch_size=args.batch_size, device=args.device, precision=args.precision,
                   progress=not args.quiet)
    if args.corpus is not None:
        embeddings = embed_corpus(args.checkpoint, args.corpus, **options)
    else:
        embeddings = embed_recording(args.checkpoint, args.recording, recipe=args.recipe, **options)
    written = save_embeddings(embeddings, args.out)
    n, dim = embeddings.features.shape
    print(f"{n} windows x {dim} features ({embeddings.info['precision']} on "
          f"{embeddings.info['device']})")
    for path in written:
        print(f"wrote {path}")
    return 0
