"""``neurofm datasets``: list the registry's datasets with their local availability; fetch one."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofm.datasets.download import cache_root, mirror_root, read_sha256sums
from neurofm.datasets.registry import availability, fetch, get_dataset, list_datasets
from neurofm.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``datasets`` parser with its ``list`` and ``fetch`` subcommands."""
    parser = subparsers.add_parser(
        "datasets",
        help="list registry datasets and their local availability; fetch one",
        description=(
            "Named public datasets. Files are looked up in the local mirror (--mirror or "
            "NEUROFM_MIRROR) and the download cache (NEUROFM_CACHE, default ~/.cache/neurofm), "
            "and every file is verified by SHA-256 before use."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="show each dataset and whether it is complete, partial or absent locally",
        description="Show each dataset, its task, and which of its files are available locally (verified).",
    )
    listing.add_argument("--mirror", default=None, metavar="DIR", help="local mirror (default: NEUROFM_MIRROR)")
    listing.add_argument("--cache", default=None, metavar="DIR", help="download cache (default: NEUROFM_CACHE)")
    listing.set_defaults(func=run)

    fetching = actions.add_parser(
        "fetch",
        help="download a dataset's missing files and verify them",
        description=(
            "Use verified files from the mirror; download the others into DEST/NAME, verifying "
            "each checksum before the file is moved into place. Files whose source publishes no "
            "checksum are refused unless --checksums or --trust-on-first-use is given."
        ),
    )
    fetching.add_argument("name", choices=list_datasets(), metavar="NAME", help="dataset name")
    fetching.add_argument("--mirror", default=None, metavar="DIR",
                          help="local mirror tried first (default: NEUROFM_MIRROR)")
    fetching.add_argument("--dest", default=None, metavar="DIR", help="download folder (default: the cache)")
    fetching.add_argument(
        "--checksums",
        default=None,
        metavar="FILE",
        help="sha256sum-style file of expected checksums you trust, by relative path or archive name",
    )
    fetching.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="accept files without a published checksum and record what was seen for later checks",
    )
    fetching.add_argument("--quiet", action="store_true", help="no progress bars")
    fetching.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``datasets list`` or ``datasets fetch``."""
    if args.action == "list":
        return _list(args)
    return _fetch(args)


def _list(args: argparse.Namespace) -> int:
    mirror = mirror_root(args.mirror)
    print(f"mirror: {mirror if mirror is not None else '(none: set NEUROFM_MIRROR or pass --mirror)'}")
    print(f"cache:  {cache_root(args.cache)}")
    rows = []
    details = []
    for name in list_datasets():
        state = availability(name, mirror=args.mirror, cache=args.cache)
        rows.append((name, state.status, state.summary().split(": ", 1)[1], get_dataset(name).task))
        if state.status != "complete":
            details.append(f"{name}: {state.explanation()}")
    header = ("NAME", "STATUS", "LOCAL FILES", "TASK")
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    if details:
        print()
        print("\n".join(details))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    checksums = read_sha256sums(_existing_file(args.checksums)) if args.checksums else None
    resolved = fetch(
        args.name,
        mirror=args.mirror,
        dest=args.dest,
        trust_on_first_use=args.trust_on_first_use,
        checksums=checksums,
        progress=not args.quiet,
    )
    # The dataset folders are the file paths minus their catalogue-relative part.
    folders = sorted({str(path)[: -len(relative)] for relative, path in resolved.paths.items()})
    print(f"{args.name}: complete, {len(resolved.paths)} files verified, {len(resolved.sources())} recordings")
    print("files in: " + ", ".join(folders))
    return 0


def _existing_file(path: str) -> Path:
    candidate = Path(path)
    if not candidate.is_file():
        raise ConfigError(f"--checksums {path}: no such file; give a sha256sum-style file of expected checksums")
    return candidate
