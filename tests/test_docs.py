"""The front door stays a front door, and every link in the docs leads somewhere inside the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_fits_on_a_page_or_two():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(doc):
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert file.exists(), f"{doc.name} links to a missing file: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in headings(file), f"{doc.name}: no heading #{anchor} in {file.name}"


def headings(doc: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation but hyphens and underscores dropped, spaces to hyphens."""
    found = set()
    for line in doc.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found
