"""The README (and docs/distillation.md) show the studies' own output: each table between its markers is the file the
command wrote, unedited, and each figure it links is the PNG the command wrote beside it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDIES = [  # (the page, the table the command wrote, its figure as the page links it)
    ("README.md", "docs/equal_compute/table.md", "docs/equal_compute/curves.png"),  # benchmarks.equal_compute --docs
    ("README.md", "docs/delta_profile/table.md", "docs/delta_profile/s_of_delta.png"),  # benchmarks.delta_profile
    ("docs/distillation.md", "docs/distillation_study/table.md", "distillation_study/curves.png"),  # --methods ...
]


@pytest.mark.parametrize(("page", "table", "figure"), STUDIES)
def test_the_pages_table_is_the_commands_file_and_its_figure_is_linked(page, table, figure):
    text = (ROOT / page).read_text()
    found = re.search(f"<!-- {re.escape(table)} -->\n(.*?)<!-- end {re.escape(table)} -->", text, re.S)
    assert found, f"{page} has no <!-- {table} --> ... <!-- end {table} --> section"
    assert found.group(1) == (ROOT / table).read_text(), f"{page}'s copy of {table} was edited or is stale"
    assert f"]({figure})" in text
    assert ((ROOT / page).parent / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_equal_compute_table_has_at_least_eight_seeds_and_counts_failures():
    text = (ROOT / "docs/equal_compute/table.md").read_text()
    seeds = int(re.search(r"Seeds \d+–\d+ \((\d+)\) per method", text).group(1))
    assert seeds >= 8
    assert "| reached the target (paired with GRPO) |" in text and "Wall time of the invocation" in text
