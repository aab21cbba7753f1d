"""Every option has one source, its dataclass: docs/configuration.md and npo_base.yaml are checked against it in
full, names and defaults, `npo.auto.*` and `npo.distill.*` (its rows named `distill.<option>`) included."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from npo_ext.config import AutoConfig, DistillConfig, GuidanceConfig, NPOConfig

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()
BASE = yaml.safe_load((ROOT / "recipes" / "npo" / "config" / "npo_base.yaml").read_text())
ROW = re.compile(r"^\| (`(?:distill\.)?[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]+) \|", re.M)
PREFIX = {DistillConfig: "distill."}


def documented_defaults() -> dict[str, str]:
    """Option name -> its default as the reference's tables write it (a row may list several options)."""
    found = {}
    for names, defaults in ROW.findall(REFERENCE):
        keys = [n.strip("`") for n in names.split(", ")]
        values = [d.strip().strip("`") for d in defaults.split(", ")] if len(keys) > 1 else [defaults.strip()]
        found.update(zip(keys, (v.strip("`") for v in values), strict=True))
    return found


def yaml_text(value) -> str:
    """A default as YAML writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return '""' if value == "" else str(value)


def defaults_of(options) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(options) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("options", [NPOConfig, AutoConfig, GuidanceConfig, DistillConfig], ids=lambda c: c.__name__)
def test_the_reference_documents_every_option_with_its_default(options):
    documented = documented_defaults()
    for name, default in defaults_of(options).items():
        name = PREFIX.get(options, "") + name
        assert name in documented, f"{options.__name__}.{name} is not in docs/configuration.md"
        if dataclasses.is_dataclass(default):
            continue  # `auto`: its own table
        assert documented[name] == yaml_text(default), f"{name}: documented {documented[name]}, default {default}"


@pytest.mark.parametrize(
    ("options", "section"),
    [
        (NPOConfig, BASE["npo"]),
        (AutoConfig, BASE["npo"]["auto"]),
        (DistillConfig, BASE["npo"]["distill"]),
        (GuidanceConfig, BASE["guidance"]),
    ],
    ids=["npo", "npo.auto", "npo.distill", "guidance"],
)
def test_npo_base_yaml_sets_every_option_to_its_default(options, section):
    defaults = defaults_of(options)
    assert set(section) == set(defaults), "npo_base.yaml and the dataclass name different options"
    for name, default in defaults.items():
        if dataclasses.is_dataclass(default):
            continue
        value = tuple(section[name]) if isinstance(section[name], list) else section[name]
        assert yaml_text(value) == yaml_text(default), f"npo_base.yaml {name}: {section[name]!r}, default {default!r}"
