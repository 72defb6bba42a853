"""The package's one layout rule, read from the imports of every module (DESIGN.md, section 4):
each floor imports only from the floors below it and from its own package; the applications do
not import one another; nothing but the dispatcher imports the command line."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsm_ref"

# Floor of each top-level module or sub-package of dsm_ref, lowest first.
FLOORS = {
    "foundations": ["files", "checks", "cache", "utils", "stats", "provenance"],
    "core": ["dct", "spectrum", "dswg", "layers", "mixers", "pretrained", "models", "flops",
             "probe", "dense"],
    "data": ["data"],
    "train": ["train"],
    "applications": ["ablation", "bench", "exercises", "info", "viz"],
    "command line": ["commands", "cli", "__main__"],
}
LEVEL = {unit: level for level, units in enumerate(FLOORS.values()) for unit in units}
APPLICATIONS = set(FLOORS["applications"])


def _unit(module: str) -> str:
    """``dsm_ref.data.cifar10`` -> ``data``; ``dsm_ref`` -> ``""`` (the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the dsm_ref modules that ``path`` (or ``source`` as if it were at
    ``path``) imports, at any depth (function-level imports too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = (module.removesuffix(".__init__") if path.name == "__init__.py"
               else module.rsplit(".", 1)[0])
    found = set()
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "dsm_ref"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dsm_ref":
                continue
            if node.module is None or target == "dsm_ref":  # from . import x, from dsm_ref import x
                found |= {f"{target}.{a.name}" for a in node.names}
            else:
                found.add(target)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_floor():
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts))
             for p in MODULES} - {"__init__"}
    assert units <= set(LEVEL), f"modules without a floor: {sorted(units - set(LEVEL))}"


def _violations(path: Path, source: str | None = None) -> list[str]:
    """The imports of ``path`` that break the rule, each with the reason."""
    me = _unit(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    wrong = []
    for target in sorted(_imports(path, source)):
        unit = _unit(target)
        if unit not in LEVEL:  # "from dsm_ref import create_model": a name the root re-exports
            unit = _unit(target.rsplit(".", 1)[0])
        if unit in ("", "__init__") or unit == me:
            continue
        if LEVEL[unit] > LEVEL[me]:
            wrong.append(f"{target} (floor '{list(FLOORS)[LEVEL[unit]]}' is above)")
        elif unit in APPLICATIONS and me in APPLICATIONS:
            wrong.append(f"{target} (applications do not import one another)")
        elif unit == "commands" and me != "cli":
            wrong.append(f"{target} (only the dispatcher imports the command line)")
    return wrong


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_floors(path):
    if path == PACKAGE / "__init__.py":  # the root re-exports the core's public API
        return
    wrong = _violations(path)
    assert not wrong, f"{path.relative_to(PACKAGE)} imports " + "; ".join(wrong)


def test_the_rule_reports_each_kind_of_violation():
    assert _violations(PACKAGE / "dswg.py", "from .train import TrainConfig\n") == [
        "dsm_ref.train (floor 'train' is above)"]
    assert _violations(PACKAGE / "ablation" / "studies.py", "from ..bench import x\n") == [
        "dsm_ref.bench (applications do not import one another)"]
    assert _violations(PACKAGE / "viz.py", "from .commands import ablate\n") == [
        "dsm_ref.commands (floor 'command line' is above)"]
    assert _violations(PACKAGE / "models.py", "from .mixers import A\nfrom . import dct\n") == []


def test_the_reader_sees_every_import_form():
    source = ("from .train import TrainConfig\nfrom dsm_ref import ablation\nfrom . import bench\n"
              "def f():\n    import dsm_ref.data.cifar10\n")
    assert _imports(PACKAGE / "dct.py", source) == {
        "dsm_ref.train", "dsm_ref.ablation", "dsm_ref.bench", "dsm_ref.data.cifar10"}
    run = PACKAGE / "ablation" / "run.py"
    assert _imports(run, "from ..files import x\nfrom .studies import y\n") == {
        "dsm_ref.files", "dsm_ref.ablation.studies"}
