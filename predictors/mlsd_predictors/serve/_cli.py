"""`mlsd serve FILE`: run a ModelDeployment on this machine (no cluster)."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.console import Console

from ._plan import DEFAULT_MODELS_DIR, PlanError, load_manifest

REPO_SAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "samples" / "ad-click-prediction.yaml"


def serve(
    file: Path = typer.Argument(None, help="ModelDeployment manifest (default: the ad-click-prediction sample)."),
    canary_percent: int = typer.Option(None, "--canary-percent", help="Canary share (default: the first step)."),
    port: int = typer.Option(8000, help="Front door HTTP port (v2 REST, /metrics) on 127.0.0.1."),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="Front door gRPC port on 127.0.0.1."),
    models_dir: Path = typer.Option(DEFAULT_MODELS_DIR, "--models-dir",
                                    help="Where pvc:// storageUris point locally (pvc://claim/<path> -> DIR/<path>)."),
    small: bool = typer.Option(False, "--small", help="Build missing models at the small (test) size."),
    build: bool = typer.Option(True, "--build/--no-build", help="Build missing model versions with `mlsd build`."),
    max_inflight: int = typer.Option(None, "--max-inflight", min=1, show_default=False,
                                     help="Infer requests the front door forwards at once (default 64); "
                                          "beyond, 503 + Retry-After at once."),
) -> None:
    """Serve a ModelDeployment locally: build missing versions, start each track, split and mirror traffic."""
    from ._run import LocalDeployment, run

    # Ctrl-C must work even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    console = Console(stderr=True)
    manifest = file or REPO_SAMPLE
    try:
        mdep = load_manifest(manifest)
    except PlanError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    deployment = LocalDeployment(mdep, models_dir, canary_percent, port, grpc_port, small, build, max_inflight)

    def on_ready(d: LocalDeployment) -> None:
        status.stop()
        case = mdep.spec.case_study.value
        console.print(f"[green]serving[/green] {mdep.metadata.name} ({case} on {mdep.spec.runtime.value})")
        for b in d.backends:
            role = "mirrored" if b.track.name == "shadow" else "of traffic"
            console.print(f"  {b.track.name:7} v{b.track.version} {b.track.precision:5} {b.track.percent:3d}% {role}"
                          f"  ({b.http_url}, log {b.log_path})")
        console.print(f"  v2 REST  http://127.0.0.1:{port}/v2/models/{case}/infer   metrics http://127.0.0.1:{port}/metrics")
        console.print(f"  v2 gRPC  127.0.0.1:{grpc_port}        examples/clients/{case.replace('-', '_')}.py")
        console.print("  Ctrl-C stops every server.")

    status = console.status(f"preparing {manifest}")
    status.start()
    try:
        run(deployment, lambda line: status.update(line[:150]), on_ready)
    except KeyboardInterrupt:
        pass
    except (PlanError, FileNotFoundError, RuntimeError) as err:
        status.stop()
        console.print(f"[red]mlsd serve: {err}[/red]")
        raise typer.Exit(1) from None
    finally:
        status.stop()
    console.print("stopped")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
