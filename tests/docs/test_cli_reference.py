"""docs/cli.md is generated from the parser; it must match the parser of this tree."""

from pathlib import Path

from neurofm.cli.reference import render_cli_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_cli_reference_is_current() -> None:
    expected = render_cli_reference()
    actual = (DOCS / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is stale: run python -m neurofm.cli.reference > docs/cli.md"
