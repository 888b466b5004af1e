"""The package boundaries docs/architecture.md draws, checked on the source.

mlsd_operator and mlsd_predictors meet only in mlsd_contract; the contract imports neither; the
local control plane (mlsd_devcluster) is dev infrastructure that neither package imports; and the
`mlsd` command line loads without the `dev` extra's `cryptography`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "mlsd_contract": ROOT / "operator" / "mlsd_contract",
    "mlsd_operator": ROOT / "operator" / "mlsd_operator",
    "mlsd_devcluster": ROOT / "operator" / "mlsd_devcluster",
    "mlsd_predictors": ROOT / "predictors" / "mlsd_predictors",
}
# What each package may import from the others (the rest of the import graph is third-party).
ALLOWED = {
    "mlsd_contract": set(),
    "mlsd_operator": {"mlsd_contract"},
    "mlsd_predictors": {"mlsd_contract"},
    "mlsd_devcluster": set(),
}


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_meet_only_in_the_contract(package: str) -> None:
    others = set(PACKAGES) - {package}
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(PACKAGES[package].rglob("*.py"))
        for name, line in sorted(_imported_packages(path))
        if name in others and name not in ALLOWED[package]
    ]
    assert not crossings, f"{package} may import only {sorted(ALLOWED[package]) or 'no other mlsd package'}:\n" + \
        "\n".join(crossings)


def test_the_checker_sees_a_crossing(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom mlsd_predictors.servers import x\n\ndef f():\n    import mlsd_operator.api\n")
    assert _imported_packages(module) == {("os", 1), ("mlsd_predictors", 2), ("mlsd_operator", 5)}


def test_the_cli_loads_without_the_dev_extra() -> None:
    """`cryptography` hidden as if the `dev` extra were not installed: every command still
    registers, and only starting a control plane names the extra."""
    script = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from typer.testing import CliRunner\n"
        "from mlsd_contract.cli import build_app\n"
        "app = build_app()\n"
        "names = sorted(c.name for c in app.registered_commands) + sorted(g.name for g in app.registered_groups)\n"
        "print(' '.join(names))\n"
        "from mlsd_devcluster._pki import write_pki\n"
        "import tempfile, pathlib\n"
        "try:\n"
        "    write_pki(pathlib.Path(tempfile.mkdtemp()))\n"
        "except ModuleNotFoundError as err:\n"
        "    print('refused:', err)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    commands, refusal = result.stdout.splitlines()
    assert set(commands.split()) >= {"crd", "validate", "render", "operator", "build", "serve", "batch",
                                     "dev-cluster"}
    assert "pip install -e '.[dev]'" in refusal


# -- docs/architecture.md's recipes stay true ------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
LIMITS = {"Add a case study": 7, "Add a runtime": 8, "Add a rollout metric": 4}   # files edited, at most


def _recipes() -> dict[str, tuple[list[str], list[str]]]:
    """Recipe title -> (files edited: the numbered list's first path, files generated)."""
    recipes: dict[str, tuple[list[str], list[str]]] = {}
    title, generated = None, False
    for line in ARCHITECTURE.read_text().splitlines():
        if line.startswith("### "):
            title, generated = line[4:].split(" (")[0], False
            recipes[title] = ([], [])
        elif title and (match := re.match(r"^\d+\. `([^`]+)`", line)):
            recipes[title][0].append(match.group(1))
        elif title and line.startswith("Generated:"):
            generated = True
            recipes[title][1].extend(re.findall(r"`([^`]+/[^`]+)`", line))
        elif generated and line.startswith(("- ", "  ")):     # the bullets under "Generated:"
            recipes[title][1].extend(re.findall(r"`([^`]+/[^`]+)`", line))
        else:
            generated = False
    return recipes


def _expand(path: str) -> list[Path]:
    from mlsd_contract import CASE_STUDIES

    if "<name>" in path:
        return [ROOT / path.replace("<name>", name if path.endswith((".yaml", ".md")) else name.replace("-", "_"))
                for name in CASE_STUDIES]
    if "<runtime>" in path:
        return [ROOT / path.replace("<runtime>", runtime) for runtime in ("kserve", "triton")]
    return [ROOT / path]


def test_the_recipes_name_real_files_within_the_budget() -> None:
    recipes = _recipes()
    assert set(recipes) == set(LIMITS), sorted(recipes)
    for title, (edited, generated) in recipes.items():
        assert 0 < len(edited) <= LIMITS[title], f"{title}: {len(edited)} files edited"
        for path in edited + generated:
            missing = [str(p.relative_to(ROOT)) for p in _expand(path) if not p.is_file()]
            assert not missing, f"{title}: {missing} named by docs/architecture.md do not exist"


def test_every_case_study_is_registered_where_the_recipe_says() -> None:
    """Each case study the contract names has its traits, its model (found by name), its KServe
    predictor (found by name: checked in a fresh process, since kserve's protobufs clash with
    tritonclient's), a sample that validates, and a page in docs."""
    from mlsd_contract import CASE_STUDIES, TRAITS, CaseStudy
    from mlsd_contract.api import validate_manifest
    from mlsd_predictors.casestudies import REGISTRY

    assert set(TRAITS) == set(CaseStudy)
    assert list(REGISTRY) == list(CASE_STUDIES)
    for name in CASE_STUDIES:
        import yaml

        sample = yaml.safe_load((ROOT / "manifests" / "samples" / f"{name}.yaml").read_text())
        mdep, problems = validate_manifest(sample)
        assert mdep is not None and mdep.spec.case_study == name, problems
        assert (ROOT / "docs" / "case-studies" / f"{name}.md").is_file()
    script = ("from mlsd_contract import CASE_STUDIES\n"
              "from mlsd_predictors.servers._registry import model_class\n"
              "print(' '.join(model_class(n).case_study for n in CASE_STUDIES))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == list(CASE_STUDIES)
