"""docs/index.md links every page of docs/, and every relative link in the docs and README resolves."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
# Pages written by runs rather than by hand; the index links them before their first run.
GENERATED = {"benchmarks.md"}


def links(page: Path) -> set[str]:
    """Relative link targets of a Markdown page (web links excluded)."""
    return {m["target"] for m in LINK.finditer(page.read_text(encoding="utf-8"))
            if "://" not in m["target"]}


def test_index_links_every_docs_page():
    pages = {path.name for path in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= links(DOCS / "index.md")


def test_relative_links_in_the_docs_and_readme_resolve():
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        for target in links(page):
            if Path(target).name in GENERATED:
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"
