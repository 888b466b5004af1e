"""The `mlsd` command line: one typer app; each package registers its own commands.

A package adds commands through an entry point in the `mlsd.commands` group (pyproject.toml), a
`register(app)` function, so this module imports neither the operator nor the predictors and
neither of those imports the other.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

GROUP = "mlsd.commands"


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="mlsd",
        help="mlsd-serving: ModelDeployment API, renderer, operator, model builds and local serving.",
        no_args_is_help=True,
        add_completion=False,
    )
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        raise RuntimeError(f"no `{GROUP}` entry points: is mlsd-serving installed (pip install -e .)?")
    for entry_point in found:
        try:
            register = entry_point.load()
        except ModuleNotFoundError as err:
            # An image ships the packages it runs: the operator image has no mlsd_devcluster.
            if err.name == entry_point.module.split(".")[0]:     # the whole package, not a part of it
                continue
            raise
        register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
