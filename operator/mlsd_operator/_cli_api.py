"""`mlsd crd`, `mlsd render`, `mlsd validate`: the API without a cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mlsd_operator import _yaml
from mlsd_contract.api import GatewayRef, ModelDeployment, crd, validate_manifest
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import RenderConfig, UnsupportedSpec, build_children

_err = Console(stderr=True, soft_wrap=True)


def _say(text: str, style: str) -> None:
    """One line per message, never wrapped or parsed as markup: scripts grep these."""
    _err.print(text, style=style, markup=False, highlight=False)


def _documents(files: list[Path]) -> list[tuple[str, int, Any]]:
    docs = []
    for path in files:
        try:
            loaded = _yaml.load_all(path)
        except (OSError, ValueError) as exc:     # yaml.YAMLError is a ValueError subclass
            _say(f"{path}: cannot read: {exc}", "red")
            raise typer.Exit(1) from exc
        docs += [(str(path), index, doc) for index, doc in enumerate(loaded)]
    return docs


def _label(source: str, index: int, doc: Any) -> str:
    name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
    return f"{source}[{index}]" + (f" ({name})" if name else "")


def _gateway(value: str | None) -> GatewayRef | None:
    if not value:
        return None
    namespace, _, name = value.rpartition("/")
    return GatewayRef(name=name, namespace=namespace or None)


def crd_command(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the ModelDeployment CustomResourceDefinition generated from the API types."""
    text = _yaml.dump(crd())
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _valid_documents(files: list[Path]) -> tuple[list[tuple[str, ModelDeployment]], bool]:
    """(label, object) for each valid document; every problem is reported; True if any was invalid."""
    valid, invalid = [], False
    for source, index, doc in _documents(files):
        mdep, problems = validate_manifest(doc)
        label = _label(source, index, doc)
        for problem in problems:
            _say(f"{label}: {problem}", "red")
        invalid |= bool(problems)
        if mdep is not None:
            valid.append((label, mdep))
    return valid, invalid


def validate_command(
    files: Annotated[list[Path], typer.Argument(help="Manifests to check ('-' reads stdin).")],
) -> None:
    """Check ModelDeployment manifests against the schema and its rules; exit 1 on any problem."""
    valid, failed = _valid_documents(files)
    for label, mdep in valid:
        try:
            build_children(mdep)
        except UnsupportedSpec as exc:
            _say(f"{label}: valid, but the operator would report Failed: {exc}", "yellow")
            continue
        _say(f"{label}: valid", "green")
    if failed:
        raise typer.Exit(1)


def render_command(
    files: Annotated[list[Path], typer.Argument(help="ModelDeployment manifests ('-' reads stdin).")],
    canary_percent: Annotated[Optional[int], typer.Option(
        min=0, max=100, help="Render the canary at this traffic share (default: from status, else 0).")] = None,
    predictor_image: Annotated[str, typer.Option(help="Image of the mlsd predictor.")] = RenderConfig().predictor_image,
    triton_image: Annotated[str, typer.Option(help="Image of tritonserver.")] = RenderConfig().triton_image,
    gateway: Annotated[Optional[str], typer.Option(help="Default Gateway as NAMESPACE/NAME.")] = None,
) -> None:
    """Print, as YAML, every object the operator would create (like `helm template`).

    ownerReferences appear only when the manifest carries metadata.uid: the operator adds them."""
    config = RenderConfig(predictor_image=predictor_image, triton_image=triton_image, gateway=_gateway(gateway))
    out: list[dict[str, Any]] = []
    valid, failed = _valid_documents(files)
    for label, mdep in valid:
        traffic = None
        if canary_percent is not None and mdep.spec.canary is not None:
            traffic = TrafficState(canary_percent)
        try:
            out += build_children(mdep, config, traffic)
        except UnsupportedSpec as exc:
            failed = True
            _say(f"{label}: {exc}", "red")
    if out:
        sys.stdout.write(_yaml.dump_all(out))
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("crd")(crd_command)
    app.command("validate")(validate_command)
    app.command("render")(render_command)


__all__ = ["ModelDeployment", "register"]
