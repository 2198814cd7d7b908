"""docs/REPRODUCE.md and docs/BENCHMARKS.md cannot rot: every `vrp-sam` command in them
parses, names a config that loads with all its `--config.*` overrides (checked as `train`
checks them), and only flags the command has. Nothing is run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vrp_sam_jax.cli.entry import parse
from vrp_sam_jax.config import load_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "REPRODUCE.md"
BENCHMARKS = DOC.with_name("BENCHMARKS.md")
VALUES = {"DATA": "/data", "W": "/weights", "F": "2"}  # the variables the page names


def commands(text: str) -> list[str]:
    """The `vrp-sam` commands of the page's bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                out.append(command.strip())
    return out


def test_the_page_is_linked_and_has_every_experiment():
    text = DOC.read_text()
    assert "docs/REPRODUCE.md" in (DOC.parents[1] / "README.md").read_text()
    for heading in ("Tables 1, 2 and 7", "Table 3", "Table 4", "Table 5", "Table 6",
                    "Figure 6"):
        assert f"## {heading}" in text
    found = commands(text)
    assert len(found) >= 20
    assert all(c.startswith("vrp-sam ") for c in found), [c for c in found
                                                           if not c.startswith("vrp-sam ")]


def test_the_benchmarks_page_names_every_benchmark_and_protocol():
    from vrp_sam_jax import names

    text = BENCHMARKS.read_text()
    assert "docs/BENCHMARKS.md" in (DOC.parents[1] / "README.md").read_text()
    assert "BENCHMARKS.md" in DOC.read_text()
    for word in (*names.BENCHMARKS, *names.PROTOCOLS):
        if word != "toy":
            assert f"`{word}`" in text, word
    found = commands(text)
    for benchmark in ("lvis", "deepglobe", "isic", "lung", "fss"):
        assert any("evaluate" in c and f"--benchmark {benchmark}" in c for c in found)
    assert any(c.startswith("vrp-sam prepare-lvis") for c in found)
    assert any(c.startswith("vrp-sam prepare-isic") for c in found)


@pytest.mark.parametrize("command", commands(DOC.read_text()) + commands(BENCHMARKS.read_text()))
def test_every_command_parses_and_its_config_loads(command):
    unknown = set(re.findall(r"\$(\w+)", command)) - set(VALUES)
    assert not unknown, f"undefined variables {unknown}"
    for name, value in VALUES.items():
        command = command.replace(f"${name}", value)
    args = parse(shlex.split(command)[1:])
    if getattr(args, "config", None):
        config = load_config(args.config, args.overrides)
        if "--config.data.fold=" in command:
            assert config.data.fold == 2
    elif getattr(args, "overrides", None):
        pytest.fail(f"--config.* overrides without --config: {command}")
