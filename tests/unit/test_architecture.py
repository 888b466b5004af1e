"""The package boundaries docs/architecture.md draws, checked on the source.

mlsd_operator and mlsd_predictors meet only in mlsd_contract; the contract imports neither; the
local control plane (mlsd_devcluster) is dev infrastructure that neither package imports; and the
`mlsd` command line loads without the `dev` extra's `cryptography`.
"""

from __future__ import annotations

import ast
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
