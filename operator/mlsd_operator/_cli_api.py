"""`mlsd crd|render|validate`: the API commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the API commands to the `mlsd` app."""
