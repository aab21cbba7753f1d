"""Imports flow one way: recipes -> npo_ext, verifiers; data_prep -> verifiers. Checked statically on every module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"npo_ext", "verifiers", "data_prep", "recipes"}
ALLOWED = {
    "npo_ext": {"npo_ext"},
    "verifiers": {"verifiers"},
    "data_prep": {"data_prep", "verifiers"},
    "recipes": {"recipes", "npo_ext", "verifiers"},
}
# npo_ext may use verl's DataProto and pure algorithm helpers, never a trainer or a worker.
NPO_EXT_FORBIDDEN_VERL = ("verl.trainer", "verl.workers", "verl.single_controller", "verl.experimental")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_package_imports_only_what_the_design_allows(package):
    assert modules_of(package), f"no modules found under {package}/"
    for path in modules_of(package):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in OURS:
                assert top in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"
            if package == "verifiers":
                assert top != "verl", f"{path.relative_to(ROOT)} imports verl"
            if package == "npo_ext":
                assert not name.startswith(NPO_EXT_FORBIDDEN_VERL), f"{path.relative_to(ROOT)} imports {name}"


def test_tests_are_not_an_importable_package():
    assert not list((ROOT / "tests").rglob("__init__.py"))
