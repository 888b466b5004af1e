"""Builds every case study once at --small (through the `mlsd build` command) for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mlsd_predictors import CASE_STUDIES, PRECISIONS, ModelCard, RepositoryCard, load_card, load_repository_card
from mlsd_predictors.cli import register

VERSION = 3


def mlsd_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # keeps `build` a subcommand, as in the real `mlsd` app
        pass

    register(app)
    return app


def run_mlsd(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mlsd_app(), list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def repository_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    code, output = run_mlsd("build", "--all", "--version", str(VERSION), "--out", str(out), "--small", "--seed", "7")
    assert code == 0, output
    return out


@pytest.fixture(params=CASE_STUDIES)
def case(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def root(repository_out: Path, case: str) -> Path:
    return repository_out / case / str(VERSION)


@pytest.fixture
def cards(root: Path) -> dict[str, ModelCard]:
    return {p: load_card(root / "kserve" / p) for p in PRECISIONS}


@pytest.fixture
def summary(root: Path) -> RepositoryCard:
    return load_repository_card(root)
