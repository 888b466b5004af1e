"""`mlsd build` / `mlsd serve`: model builds and local serving (owned by the predictors work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the predictor commands to the `mlsd` app."""
    from mlsd_predictors.serve import _cli as serve_cli; serve_cli.register(app)
