"""Generate the CLI reference (docs/cli.md) from the parser itself, so it cannot drift."""

from __future__ import annotations

import argparse
import os

from neurofm.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # argparse exposes no public walker
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
    return found


def render_cli_reference() -> str:
    """Markdown with the ``--help`` text of ``neurofm`` and of every (nested) subcommand."""
    # argparse wraps to the terminal width; fix it so the reference is the same everywhere.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return _render(build_parser())
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def _render(parser: argparse.ArgumentParser) -> str:
    parts = [
        "# CLI reference",
        "",
        ("Generated from the parser by `python -m neurofm.cli.reference > docs/cli.md`; "
         "a test checks it is current."),
        "",
        "## neurofm",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    queue = [(f"neurofm {name}", sub) for name, sub in _subcommands(parser)]
    while queue:
        title, sub = queue.pop(0)
        parts += ["", f"## {title}", "", "```text", sub.format_help().rstrip(), "```"]
        queue[0:0] = [(f"{title} {name}", child) for name, child in _subcommands(sub)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_cli_reference(), end="")
