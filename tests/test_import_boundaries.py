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
# npo_ext may use verl's DataProto (``from verl import DataProto``) and nothing else of verl.
NPO_EXT_VERL = {"verl"}
# a module named by a string escapes this check, so npo_ext loads none
DYNAMIC_IMPORTS = {"importlib", "__import__"}


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
            if package == "npo_ext" and top == "verl":
                assert name in NPO_EXT_VERL, f"{path.relative_to(ROOT)} imports {name}: npo_ext may use DataProto only"


def test_npo_ext_takes_verl_only_as_dataproto_and_loads_no_module_by_name():
    for path in modules_of("npo_ext"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "verl":
                assert [a.name for a in node.names] == ["DataProto"], f"{path.relative_to(ROOT)}: from verl import ..."
            assert not (isinstance(node, ast.Name) and node.id in DYNAMIC_IMPORTS), f"{path.relative_to(ROOT)}"
        assert not imported_modules(path) & DYNAMIC_IMPORTS, f"{path.relative_to(ROOT)} loads modules by name"


def test_tests_are_not_an_importable_package():
    assert not list((ROOT / "tests").rglob("__init__.py"))


def test_the_backbone_imports_no_baseline_recipe():
    # recipes/npo is the backbone every method plugs into (recipes/common/guidance_plugin.py); a baseline's folder
    # may import the backbone, never the other way round, so there is no package cycle
    baselines = {"recipes.luffy", "recipes.rlep", "recipes.exgrpo"}
    for package in ("recipes/npo", "recipes/common"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imported_modules(path):
                assert not any(name == b or name.startswith(b + ".") for b in baselines), f"{path} imports {name}"
