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


_WITHOUT_KOPF = (
    "import sys; sys.modules['kopf'] = None\n"
    "import importlib.metadata as md\n"
    "import mlsd_contract.cli as cli\n"
    "real = cli.version\n"
    "def version(name):\n"
    "    if {uninstalled} and name.lower() == 'kopf':\n"
    "        raise md.PackageNotFoundError(name)\n"
    "    return real(name)\n"
    "cli.version = version\n"
    "app = cli.build_app()\n"
    "print(' '.join(sorted(c.name for c in app.registered_commands) + sorted(g.name for g in app.registered_groups)))\n"
)


def test_the_cli_offers_what_is_installed_without_the_operator_extra() -> None:
    """Without the `operator` extra (kopf) `mlsd operator` is not offered; every command whose
    imports are installed still is (the API commands need no kopf)."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_KOPF.format(uninstalled=True)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    commands = set(result.stdout.split())
    assert commands >= {"build", "serve", "batch", "dev-cluster", "crd", "validate", "render"}
    assert "operator" not in commands


def test_the_cli_fails_on_a_broken_operator_extra() -> None:
    """kopf unimportable although its distribution is installed: a broken install, not a choice."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_KOPF.format(uninstalled=False)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "kopf" in result.stderr, result.stdout + result.stderr


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


TOY = '''
import sys, types
from enum import StrEnum

import mlsd_contract._names as names

# The recipe's first file: a CaseStudy member and its traits (done here before the API is imported).
names.CaseStudy = StrEnum("CaseStudy", {**{c.name: c.value for c in names.CaseStudy}, "TOY_RANKING": "toy-ranking"})
names.CASE_STUDIES = tuple(c.value for c in names.CaseStudy)
names.TRAITS = {names.CaseStudy(c.value): t for c, t in names.TRAITS.items()}
names.TRAITS[names.CaseStudy("toy-ranking")] = names.CaseStudyTraits(
    "cpu", "a toy: nothing to accelerate", "250m", "512Mi", content_only=True)
import mlsd_contract
mlsd_contract.CaseStudy, mlsd_contract.CASE_STUDIES, mlsd_contract.TRAITS = names.CaseStudy, names.CASE_STUDIES, names.TRAITS

# The second: its model module, `casestudies/_toy_ranking.py`, found by name (served from memory).
import importlib.abc, importlib.util

class ToyModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    name = "mlsd_predictors.casestudies._toy_ranking"

    def find_spec(self, fullname, path, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == self.name else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from mlsd_predictors.casestudies._base import CaseStudy as Base

        class ToyRanking(Base):
            name, primary_metric, summary = "toy-ranking", "ndcg", "a toy"
            train = graphs = evaluate = baseline_metrics = training_config = triton_steps = lambda self, *a: None

        ToyRanking.__module__ = module.__name__
        module.ToyRanking = ToyRanking

sys.meta_path.insert(0, ToyModule())

from mlsd_contract.api import crd, validate_manifest
from mlsd_operator.builders import build_children
from mlsd_predictors.casestudies import REGISTRY, case_study

schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
assert "toy-ranking" in schema["caseStudy"]["enum"], schema["caseStudy"]
manifest = {"apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "toy", "namespace": "demo", "uid": "0"},
            "spec": {"caseStudy": "toy-ranking", "runtime": "triton", "cache": None,
                     "model": {"version": "1", "storageUri": "pvc://models/toy-ranking/1"}}}
del manifest["spec"]["cache"]
mdep, problems = validate_manifest(manifest)
assert mdep is not None, problems
children = build_children(mdep)
pods = [c for c in children if c["kind"] == "Deployment"][0]["spec"]["template"]["spec"]
requests = [c for c in pods["containers"] if c["name"] == "tritonserver"][0]["resources"]["requests"]
assert requests == {"cpu": "250m", "memory": "512Mi"}, requests
toy = REGISTRY["toy-ranking"]
assert toy.__name__ == "ToyRanking" and isinstance(case_study("toy-ranking"), toy)
print("ok", sorted(c["kind"] for c in children))
'''


def test_a_toy_case_study_flows_through_validate_render_and_the_build_registry() -> None:
    """The recipe's first two files are enough for the API (CRD enum, validation), the builders
    (placement and requests from its traits) and `mlsd build`'s registry. Run in a fresh process:
    the contract's enum is extended before anything imports it."""
    result = subprocess.run([sys.executable, "-c", TOY], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok"), result.stdout


HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == {name!r}:      # as if not installed
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
sys.meta_path.insert(0, Hide())
from mlsd_contract.cli import build_app
app = build_app()
print(" ".join(sorted(c.name for c in app.registered_commands) + sorted(g.name for g in app.registered_groups)))
"""


def test_the_cli_loads_without_a_package_the_image_leaves_out() -> None:
    """The operator image ships no mlsd_devcluster: `mlsd` loads without its commands; a package
    that is there but misses a part still fails loudly."""
    result = subprocess.run([sys.executable, "-c", HIDE.format(name="mlsd_devcluster")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "operator" in result.stdout.split() and "dev-cluster" not in result.stdout.split()
    broken = subprocess.run([sys.executable, "-c", HIDE.format(name="mlsd_operator.controller")],
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0 and "No module named 'mlsd_operator.controller'" in broken.stderr
