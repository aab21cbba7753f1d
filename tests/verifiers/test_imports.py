"""`verifiers` stays light and self-contained: fast to import for reward use, no project or verl imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "verifiers"
HEAVY = ("sympy", "mathruler", "math_verify", "torch", "transformers", "vllm", "verl", "numpy", "pyarrow")
FOREIGN = ("verl", "npo_ext", "recipes", "data_prep")


def test_reward_import_loads_nothing_heavy() -> None:
    code = (
        "import sys, verifiers.reward, verifiers.cli\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, id(node) in top))
    return found


def test_no_imports_from_the_rest_of_the_project_or_verl() -> None:
    for path in PACKAGE.glob("*.py"):
        for module, _ in _imports(path):
            assert module.split(".")[0] not in FOREIGN, f"{path.name} imports {module}"


def test_heavy_libraries_only_imported_lazily() -> None:
    for path in PACKAGE.glob("*.py"):
        for module, at_top in _imports(path):
            if module.split(".")[0] in HEAVY:
                assert not at_top, f"{path.name} imports {module} at module level"
