"""The layout is the architecture: imports point down, the shared names are the library's, the
configs are data, and the packages pyproject installs are the packages in the tree."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("sam_port", "vrp_sam_jax")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """Every module a file imports, at module level or inside functions (`from p import m`
    counts as importing `p.m` when that is a module of `modules`, else `p`)."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if modules is not None and full in modules else base)
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the library modules it imports."""
    files = [p for lib in LIBRARIES for p in (REPO / lib).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {m for m in _imports(path, set(modules)) if m in modules}
            for name, path in modules.items()}


def _unit(module: str) -> str:
    """The layer a module belongs to: `vrp_sam_jax.<package or module>` or `sam_port`."""
    parts = module.split(".")
    return "sam_port" if parts[0] == "sam_port" else ".".join(parts[:2])


# The rooms, top to bottom (docs/ARCHITECTURE.md): a module imports only rooms below its own.
# `vrp_sam_jax` itself (its __init__) re-exports the loader, so it sits on top.
LAYERS = (
    ("vrp_sam_jax", "vrp_sam_jax.cli"),
    ("vrp_sam_jax.app",),  # Gradio stays an optional extra: only the command line imports it
    ("vrp_sam_jax.demo", "vrp_sam_jax.sam"),
    ("vrp_sam_jax.model_io",),
    ("vrp_sam_jax.training",),
    ("vrp_sam_jax.video",),
    ("vrp_sam_jax.evaluation", "vrp_sam_jax.inference"),
    ("vrp_sam_jax.config", "vrp_sam_jax.weights"),
    ("vrp_sam_jax.data",),
    ("vrp_sam_jax.models",),
    ("vrp_sam_jax.transforms", "vrp_sam_jax.runtime"),
    ("vrp_sam_jax.storage",),
    ("vrp_sam_jax.errors", "vrp_sam_jax.names"),
    ("sam_port",),
)
LIBRARY_FILES = sorted(p for lib in LIBRARIES for p in (REPO / lib).rglob("*.py"))


def test_imports_point_down():
    graph = _graph()
    rank = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}
    assert {_unit(m) for m in graph} == set(rank), "a room missing from LAYERS"
    bad = [f"{module} imports {target}" for module, targets in graph.items()
           for target in targets
           if _unit(target) != _unit(module) and rank[_unit(target)] <= rank[_unit(module)]]
    assert not bad, bad


def test_no_import_cycles_inside_a_package():
    graph = _graph()
    inside = {m: {t for t in targets if _unit(t) == _unit(m) and t != m}
              for m, targets in graph.items()}
    assert not _cycles(inside)


def test_no_private_name_is_used_across_modules():
    """`from m import _x` and `m._x` for a library module m, in the libraries, the tools and
    the benchmarks (tests may reach inside)."""
    modules = {_module_name(p) for p in LIBRARY_FILES}
    files = [*LIBRARY_FILES, *sorted((REPO / "tools").glob("*.py")),
             *sorted((REPO / "benchmarks").glob("*.py"))]
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        bound = set()  # names this file binds to a library module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        bound.add(alias.asname or alias.name)
                    elif (node.module in modules and alias.name.startswith("_")
                          and not alias.name.startswith("__")):
                        bad.append(f"{path.name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                bound |= {a.asname for a in node.names if a.asname and a.name in modules}
        bad += [f"{path.name}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound and node.attr.startswith("_")
                and not node.attr.startswith("__")]
    assert not bad, bad


def test_one_atomic_writer():
    """A file is written whole in one place, `sam_port.files.replacing` (everything else writes
    through it, or `vrp_sam_jax.storage.files`); the only other rename is `paths.move`, which
    moves a file that exists (a damaged checkpoint set aside, a finished download)."""
    allowed = {"sam_port/files.py": 1, "vrp_sam_jax/storage/paths.py": 1}
    files = [*LIBRARY_FILES, *sorted((REPO / "tools").glob("*.py")),
             *sorted((REPO / "benchmarks").glob("*.py"))]
    found = {}
    for path in files:
        text = path.read_text()
        count = sum(text.count(call) for call in ("os.replace(", "os.rename(", ".rename("))
        if count:
            found[path.relative_to(REPO).as_posix()] = count
    assert found == allowed


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_among_packages():
    units: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        units.setdefault(_unit(module), set()).update(
            _unit(t) for t in targets if _unit(t) != _unit(module))
    assert not _cycles(units)
    # the test sees the real graph: the trainer uses the evaluator, not the other way round
    assert "vrp_sam_jax.evaluation" in units["vrp_sam_jax.training"]


def test_names_and_the_parser_import_no_jax():
    code = ("import sys, vrp_sam_jax.names, vrp_sam_jax.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_shared_names_are_the_librarys():
    from sam_port.config import SAM2_CONFIGS, SAM_CONFIGS
    from sam_port.modeling.image_encoder import ATTENTION_IMPLEMENTATIONS
    from vrp_sam_jax import names
    from vrp_sam_jax.models import BACKBONES
    from vrp_sam_jax.transforms import conditions

    assert set(names.BACKBONES) == set(BACKBONES)
    assert set(names.SAM_TYPES) == set(SAM_CONFIGS) - {"default"}
    assert set(names.SAM2_TYPES) == set(SAM2_CONFIGS)
    assert names.ATTENTION == ATTENTION_IMPLEMENTATIONS
    assert set(names.PAPER_BACKBONES) <= set(names.BACKBONES)
    assert conditions.EVAL_SCRIBBLE_SEED == names.VRP_SEED
    mask = np.zeros((32, 32))
    mask[8:24, 8:24] = 1
    for condition in names.CONDITIONS:  # each name is a condition the simulator draws
        assert conditions.simulate_condition(condition, mask, np.random.default_rng(0)).any()


def test_configs_are_complete_data_files():
    import dataclasses

    from vrp_sam_jax.config import FIELDS, SHIPPED, load_config
    from vrp_sam_jax.models import VRPSamConfig

    files = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")
    assert files == sorted(SHIPPED)
    for name in SHIPPED:
        tree = ast.parse((REPO / "configs" / f"{name}.py").read_text())
        imported = {m.split(".")[0] for m in _imports(REPO / "configs" / f"{name}.py")}
        assert imported == {"ml_collections"}, (name, imported)
        assert not any(isinstance(n, ast.ImportFrom) for n in tree.body)
        config = load_config(name)  # checked to hold exactly FIELDS
        assert set(config) == set(FIELDS)
    # the schema's model section is the model's own fields, in their order
    assert FIELDS["model"] == tuple(f.name for f in dataclasses.fields(VRPSamConfig))
    from vrp_sam_jax.errors import ConfigError

    with pytest.raises(ConfigError, match="no such config file, nor a shipped config"):
        load_config("pascall")


def test_an_incomplete_config_file_is_refused(tmp_path):
    from vrp_sam_jax.config import load_config
    from vrp_sam_jax.errors import ConfigError

    text = (REPO / "configs" / "toy.py").read_text()
    incomplete = tmp_path / "mine.py"
    incomplete.write_text(text.replace('"lr": 2e-3,', '').replace('"log": {', '"logs": {'))
    with pytest.raises(ConfigError, match=r"mine.py: not a complete VRP-SAM config: unknown "
                                          r"section 'logs'; missing train.lr; missing log"):
        load_config(str(incomplete))
    wrong = tmp_path / "wrong.py"
    wrong.write_text(text.replace('"condition": "mask",', '"condition": "lasso",'))
    with pytest.raises(ConfigError, match="data.condition='lasso' is not one of"):
        load_config(str(wrong))


def test_pyproject_lists_every_package():
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    in_tree = {_module_name(p.parent / "__init__.py") for lib in LIBRARIES
               for p in (REPO / lib).rglob("__init__.py")}
    assert set(packages) == in_tree | {"vrp_sam_jax.configs"}


def test_an_installed_package_has_its_configs_and_split_lists(tmp_path):
    """A non-editable install (a wheel's layout, run from elsewhere) names the shipped configs
    without a path and reads the split lists it carries."""
    import importlib.metadata
    import shutil

    setuptools = importlib.metadata.version("setuptools")
    if int(setuptools.split(".")[0]) < 68:
        pytest.skip(f"setuptools {setuptools} cannot build this project without isolation")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("sam_port", "vrp_sam_jax", "configs"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    code = ("import vrp_sam_jax, vrp_sam_jax.configs as c; "
            "from vrp_sam_jax.config import load_config; "
            "from vrp_sam_jax.data import protocols; "
            "config = load_config('pascal:vgg16,box'); "
            "print(vrp_sam_jax.__file__, c.__file__, config.model.backbone, "
            "config.data.condition, len(protocols.episodes('pascal', 0, 1, 'hsnet', 3)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr[-2000:]
    package, configs, backbone, condition, episodes = out.stdout.split()
    assert package.startswith(str(target)) and configs.startswith(str(target / "vrp_sam_jax"))
    assert (backbone, condition, episodes) == ("vgg16", "box", "3")


def test_the_readme_lists_every_command():
    import argparse
    import re

    from vrp_sam_jax.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"the `vrp-sam` command line\s+\(([^)]*)\)", readme).group(1)
    assert re.findall(r"`([a-z-]+)`", listed) == list(commands)
