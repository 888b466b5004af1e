"""`mlsd operator`: run the operator (kopf) with health and metrics endpoints."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer


def operator_command(
    namespace: Annotated[Optional[list[str]], typer.Option(
        "--namespace", "-n", help="Watch only these namespaces (repeatable); default: all.")] = None,
    gateway: Annotated[Optional[str], typer.Option(help="Default Gateway for Triton routes, NAMESPACE/NAME.")] = None,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0: off).")] = 9090,
    health_port: Annotated[int, typer.Option(help="Liveness endpoint port (/healthz).")] = 8080,
    leader_election: Annotated[bool, typer.Option(help="Hold a Lease so replicas run one at a time.")] = True,
    lease_namespace: Annotated[str, typer.Option(envvar="POD_NAMESPACE", help="Namespace of the Lease.")] = "mlsd-system",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the ModelDeployment operator against the current kubeconfig or in-cluster credentials."""
    import kopf

    from mlsd_operator import controller  # noqa: F401  (registers handlers)

    if gateway:
        os.environ["MLSD_GATEWAY"] = gateway
    os.environ["MLSD_METRICS_PORT"] = str(metrics_port)
    if namespace:
        os.environ["MLSD_NAMESPACES"] = ",".join(namespace)
    kopf.configure(verbose=verbose)     # kopf owns logging setup; a second handler would double every line
    if leader_election:
        from mlsd_operator.controller._kube import new_api_client
        from mlsd_operator.controller._leader import LeaseElector, StandbyHealth
        from mlsd_operator.controller._metrics import LEADER, serve_metrics

        serve_metrics(metrics_port)
        LEADER.set(0)

        lease_seconds = int(os.environ.get("MLSD_LEASE_SECONDS", "15"))
        elector = LeaseElector(new_api_client(), lease_namespace, lease_seconds=lease_seconds,
                               renew_seconds=max(1.0, lease_seconds / 3))
        standby = StandbyHealth(health_port)
        try:
            elector.wait_until_leader()
        finally:
            standby.close()
        elector.keep_leading()
    kopf.run(
        standalone=True,
        clusterwide=not namespace,
        namespaces=namespace or (),
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
    )


def register(app: typer.Typer) -> None:
    app.command("operator")(operator_command)
