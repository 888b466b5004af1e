"""`mlsd serve`: a ModelDeployment on one machine, with the cluster's traffic split and mirroring."""

from ._plan import PlanError, Track, load_manifest, plan

__all__ = ["PlanError", "Track", "load_manifest", "plan"]
