"""Where the control-plane binaries come from.

Two sources, looked up per binary so they can be mixed:
1. `KUBEBUILDER_ASSETS`, for people who already have envtest's binaries (etcd, kube-apiserver,
   kubectl; envtest ships no controller-manager, scheduler or kwok);
2. the cache `hack/control-plane.sh build` fills: `${MLSD_CACHE:-~/.cache/mlsd}/control-plane/
   <KUBE_VERSION>/bin`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Must equal KUBE_VERSION in hack/control-plane.sh (tests/integration checks that they agree).
KUBE_VERSION = "v1.37.2"

BUILD_HINT = "run `hack/control-plane.sh build` (or point KUBEBUILDER_ASSETS at envtest binaries)"


class MissingBinariesError(RuntimeError):
    """A control-plane binary is in none of the places we look."""


def cache_root() -> Path:
    """`${MLSD_CACHE:-~/.cache/mlsd}`: where every built or downloaded tool and image is kept."""
    return Path(os.environ.get("MLSD_CACHE") or Path.home() / ".cache" / "mlsd")


def cache_bin_dir() -> Path:
    """The directory `hack/control-plane.sh path` prints."""
    return cache_root() / "control-plane" / KUBE_VERSION / "bin"


def search_dirs(bin_dir: Path | None = None) -> list[Path]:
    """An explicit `bin_dir` wins outright; otherwise KUBEBUILDER_ASSETS, then the build cache."""
    if bin_dir is not None:
        return [Path(bin_dir)]
    dirs = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        dirs.append(Path(assets))
    dirs.append(cache_bin_dir())
    return dirs


def find_binaries(names: list[str], bin_dir: Path | None = None) -> dict[str, Path]:
    """Maps each name to an executable, or raises naming every missing one at once."""
    dirs = search_dirs(bin_dir)
    found: dict[str, Path] = {}
    for name in names:
        for directory in dirs:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found[name] = candidate
                break
    missing = [name for name in names if name not in found]
    if missing:
        looked = ", ".join(str(d) for d in dirs)
        raise MissingBinariesError(
            f"control-plane binaries not found: {', '.join(missing)} (looked in {looked}); "
            f"{BUILD_HINT}"
        )
    return found
