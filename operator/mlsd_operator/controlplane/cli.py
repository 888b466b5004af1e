"""`mlsd dev-cluster`: the local control plane for a person (owned by the control-plane work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the control-plane commands to the `mlsd` app."""
