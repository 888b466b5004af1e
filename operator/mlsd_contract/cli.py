"""The `mlsd` command line: one typer app; each package registers its own commands.

A package adds commands through an entry point in the `mlsd.commands` group (pyproject.toml), a
`register(app)` function, so this module imports neither the operator nor the predictors and
neither of those imports the other.
"""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version

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
            # ... and the extras it runs: without the `operator` extra there are no operator commands.
            if _missing_extra(entry_point):
                continue
            raise
        register(app)
    return app


def _missing_extra(entry_point: EntryPoint) -> bool:
    """True when the entry point names an extra (`module:attr [extra]`) not installed in full."""
    if not entry_point.extras or entry_point.dist is None:
        return False
    for line in entry_point.dist.requires or ():
        name, _, marker = line.partition(";")
        if not set(re.findall(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)) & set(entry_point.extras):
            continue
        try:
            version(re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0))
        except PackageNotFoundError:
            return True
    return False


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
