"""The `mlsd` command line: one typer app; each area registers its own commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mlsd",
    help="mlsd-serving: ModelDeployment API, renderer, operator, model builds and local serving.",
    no_args_is_help=True,
    add_completion=False,
)


def _register_all() -> None:
    from mlsd_operator import _cli_api
    from mlsd_operator.controller import cli as controller_cli
    from mlsd_operator.controlplane import cli as controlplane_cli
    from mlsd_predictors import cli as predictors_cli

    _cli_api.register(app)
    controller_cli.register(app)
    controlplane_cli.register(app)
    predictors_cli.register(app)


_register_all()


def main() -> None:
    app()
