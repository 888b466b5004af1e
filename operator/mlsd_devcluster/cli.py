"""`mlsd dev-cluster`: the local control plane for a person (owned by the control-plane work).

`up` runs the control plane in the foreground until Ctrl-C; `up --detach` runs that same
foreground process in the background (the "supervisor") and returns once the cluster is ready.
`down` stops the supervisor, which stops every component. One state dir holds one cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from ._binaries import MissingBinariesError, cache_root
from ._process import StartupError, log_tail

_PID_FILE = "supervisor.pid"
_READY_FILE = "ready"
_LOG_FILE = "dev-cluster.log"
_OWNED_DIRS = ("etcd-data", "pki", "apiserver", "kube-controller-manager", "kube-scheduler")


def _default_state_dir() -> Path:
    return cache_root() / "dev-cluster"


StateDir = typer.Option(
    None, "--state-dir", help="Where the kubeconfig, logs and etcd data live "
    "(default: ${MLSD_CACHE:-~/.cache/mlsd}/dev-cluster)."
)


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / _PID_FILE).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _usage(state_dir: Path, kubectl: Path) -> str:
    kubeconfig = state_dir / "kubeconfig"
    env = "mlsd dev-cluster env"
    if state_dir != _default_state_dir().resolve():
        env += f" --state-dir {state_dir}"
    return (
        f"control plane ready; kubeconfig: {kubeconfig}\n"
        f"  export KUBECONFIG={kubeconfig}      # or: eval \"$({env})\"\n"
        f"  {kubectl} get nodes\n"
        f"logs: {state_dir}/*.log"
    )


def up(
    state_dir: Path | None = StateDir,
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background."),
    timeout: float = typer.Option(180.0, help="Seconds to wait for the cluster to be ready."),
) -> None:
    """Start etcd, kube-apiserver, controller-manager, scheduler and kwok with 2 CPU + 2 GPU nodes."""
    state_dir = (state_dir or _default_state_dir()).resolve()
    if pid := _running_pid(state_dir):
        typer.echo(f"a dev cluster is already running (pid {pid}); `mlsd dev-cluster down` first")
        raise typer.Exit(1)
    if detach:
        _up_detached(state_dir, timeout)
    else:
        _up_foreground(state_dir, timeout)


def _up_foreground(state_dir: Path, timeout: float) -> None:
    from ._launcher import ControlPlane

    # A fresh cluster each time: stale etcd data or certs from an earlier run would only confuse.
    # Only what we wrote goes: --state-dir may point at a directory holding other things.
    for name in _OWNED_DIRS:
        shutil.rmtree(state_dir / name, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / _PID_FILE).write_text(str(os.getpid()))
    # `down` sends SIGTERM; turn it into the same clean shutdown as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    plane = ControlPlane(
        controller_manager=True, scheduler=True, kwok=True, work_dir=state_dir,
        start_timeout=timeout,
    )
    try:
        plane.start()
        typer.echo(_usage(state_dir, plane.binaries["kubectl"]))
        (state_dir / _READY_FILE).touch()
        typer.echo("press Ctrl-C to stop")
        while plane.running:
            time.sleep(1)
        typer.echo("a component exited; stopping (see the logs)", err=True)
        raise typer.Exit(1)
    except (MissingBinariesError, StartupError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        plane.stop()
        for name in (_PID_FILE, _READY_FILE):
            (state_dir / name).unlink(missing_ok=True)


def _up_detached(state_dir: Path, timeout: float) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / _READY_FILE).unlink(missing_ok=True)
    log_path = state_dir / _LOG_FILE
    with open(log_path, "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "mlsd_devcluster.cli", "up",
             "--state-dir", str(state_dir), "--timeout", str(timeout)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this shell and ignores its Ctrl-C
        )
    deadline = time.monotonic() + timeout + 10
    while not (state_dir / _READY_FILE).exists():
        if supervisor.poll() is not None or time.monotonic() > deadline:
            supervisor.terminate()
            typer.echo(f"dev cluster did not start; {log_path}:\n{log_tail(log_path)}", err=True)
            raise typer.Exit(1)
        time.sleep(0.2)
    typer.echo(log_path.read_text().replace("press Ctrl-C to stop", "").rstrip())
    typer.echo(f"running in the background (pid {supervisor.pid}); stop with `mlsd dev-cluster down`")


def down(state_dir: Path | None = StateDir) -> None:
    """Stop the dev cluster started with `up --detach`."""
    state_dir = (state_dir or _default_state_dir()).resolve()
    pid = _running_pid(state_dir)
    if pid is None:
        typer.echo("no dev cluster running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _running_pid(state_dir) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running_pid(state_dir) == pid:
        # The components die with it (PR_SET_PDEATHSIG).
        os.kill(pid, signal.SIGKILL)
        (state_dir / _PID_FILE).unlink(missing_ok=True)
    typer.echo("dev cluster stopped")


def env(state_dir: Path | None = StateDir) -> None:
    """Print shell exports for the running dev cluster: eval "$(mlsd dev-cluster env)"."""
    from ._binaries import find_binaries

    state_dir = (state_dir or _default_state_dir()).resolve()
    if _running_pid(state_dir) is None:
        typer.echo("no dev cluster running; start one with `mlsd dev-cluster up --detach`", err=True)
        raise typer.Exit(1)
    kubectl = find_binaries(["kubectl"])["kubectl"]
    typer.echo(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
    # The pinned kubectl, first on PATH: version skew with a system kubectl stays out of the way.
    typer.echo(f'export PATH="{kubectl.parent}:$PATH"')


def _dev_cluster_app() -> typer.Typer:
    app = typer.Typer(
        name="dev-cluster",
        help="A local Kubernetes control plane (kwok nodes, 2 CPU + 2 GPU) for trying the operator.",
        no_args_is_help=True,
    )
    app.command()(up)
    app.command()(down)
    app.command()(env)
    app.add_typer(_images_app(), name="images")
    return app


def _images_app() -> typer.Typer:
    from . import images

    app = typer.Typer(name="images", no_args_is_help=True,
                      help="The project's images, built from its Dockerfiles with buildah (no Docker engine).")

    def run(action):
        try:
            return action()
        except (images.ImageToolsMissing, images.ImageBuildFailed) as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(1) from err

    @app.command("build")
    def build_(names: list[str] = typer.Argument(None, help=f"Images to build (default: all of {', '.join(images.BY_NAME)}).")) -> None:
        """Builds each image, or finds it unchanged by the digest of its inputs."""
        for result in run(lambda: images.build(names or ())):
            state = "cached" if result.cached else f"built in {result.seconds:.0f}s"
            typer.echo(f"{result.image.ref}  {state}")

    @app.command("list")
    def list_() -> None:
        """One line per image: reference, digest, uncompressed size."""
        missing = False
        for image in images.IMAGES:
            found = run(lambda image=image: images.info(image))
            if found is None:
                missing = True
                typer.echo(f"{image.ref}  (not built: hack/images.sh build {image.name})")
            else:
                typer.echo(f"{found.ref}  {found.digest}  {found.size_mb:.0f} MB")
        if missing:
            raise typer.Exit(1)

    @app.command("push")
    def push(registry: str = typer.Argument(..., help="e.g. registry.example.com/mlsd"),
             names: list[str] = typer.Argument(None, help="Images to push (default: all)."),
             tls_verify: bool = typer.Option(True, help="Verify the registry's TLS certificate.")) -> None:
        """Copies the built images to REGISTRY/<name>:<tag>."""
        for dest in run(lambda: images.push(registry, names or (), tls_verify)):
            typer.echo(dest)

    return app


def register(app: typer.Typer) -> None:
    """Adds the control-plane commands to the `mlsd` app."""
    app.add_typer(_dev_cluster_app(), name="dev-cluster")


if __name__ == "__main__":  # the detached supervisor runs this module directly
    _dev_cluster_app()()
