"""From a ModelDeployment to local tracks: where each version's repository lives on this machine,
what traffic share it gets, and building the repositories that are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from mlsd_contract import variant_dir
from mlsd_contract.api import ModelDeployment, ModelRef, Runtime, validate_manifest
from mlsd_contract.tracks import TrafficState

DEFAULT_MODELS_DIR = Path(os.environ.get("MLSD_MODELS_DIR", Path.home() / ".cache" / "mlsd" / "models"))


class PlanError(Exception):
    """The manifest cannot run locally; the message says why."""


@dataclass(frozen=True)
class Track:
    """A contract track (mlsd_contract.tracks) with its repository on this machine."""

    name: str                # stable | canary | shadow
    model: ModelRef
    root: Path               # <out>/<case>/<version>: the version's repository
    percent: int             # traffic share (stable/canary) or mirrored share (shadow)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def precision(self) -> str:
        return self.model.precision.value

    def variant_dir(self, runtime: Runtime) -> Path:
        return variant_dir(self.root, runtime.value, self.precision)


def load_manifest(path: Path) -> ModelDeployment:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as err:
        raise PlanError(f"cannot read {path}: {err}") from err
    if len(documents) != 1:
        raise PlanError(f"{path}: expected one ModelDeployment, found {len(documents)} documents")
    mdep, problems = validate_manifest(documents[0])
    if mdep is None:
        raise PlanError(f"{path} is not a valid ModelDeployment:\n" + "\n".join(f"  {p}" for p in problems))
    return mdep


def local_root(model: ModelRef, case_study: str, models_dir: Path) -> Path:
    """The directory a storageUri stands for on this machine.

    file:///abs/path -> that path; pvc://<claim>/<path> -> <models_dir>/<path> (the claim's content
    laid out as `mlsd build --out` writes it); s3:// and gs:// are not fetched by `mlsd serve`.
    """
    uri = urlparse(model.storage_uri)
    if uri.scheme == "file":
        return Path(uri.netloc + uri.path)
    if uri.scheme == "pvc":
        sub_path = uri.path.lstrip("/")
        return models_dir / (sub_path or f"{case_study}/{model.version}")
    raise PlanError(f"storageUri {model.storage_uri}: `mlsd serve` reads file:// and pvc:// (mapped to "
                    f"--models-dir); copy the repository locally and use file://")


def plan(mdep: ModelDeployment, models_dir: Path, canary_percent: int | None = None) -> list[Track]:
    spec, case = mdep.spec, mdep.spec.case_study.value
    percent = None
    if spec.canary is not None:
        percent = spec.canary.steps[0] if canary_percent is None else canary_percent
        if not 0 <= percent <= 100:
            raise PlanError(f"--canary-percent must be within 0..100, got {percent}")
    elif canary_percent is not None:
        raise PlanError("--canary-percent given but the manifest has no canary")
    # Locally a canary is live from the first step on (no status, no rollout moves it).
    return [Track(t.name, t.model, local_root(t.model, case, models_dir), t.percent)
            for t in TrafficState(percent).tracks(mdep)]


def build_missing(case_study: str, tracks: list[Track], runtime: Runtime, *, small: bool,
                  on_line: Callable[[str], None]) -> None:
    """Runs `mlsd build` for every version whose variant directory is missing."""
    done: set[Path] = set()
    for track in tracks:
        if track.variant_dir(runtime).is_dir() or track.root in done:
            continue
        out = track.root.parent.parent   # root = <out>/<case>/<version>
        if track.root.parent.name != case_study:
            raise PlanError(f"{track.root} is missing and is not laid out as <out>/{case_study}/<version>: "
                            "build it with `mlsd build` first")
        command = [sys.executable, "-m", "mlsd_contract.cli", "build", case_study, "--version", track.version,
                   "--out", str(out), *(["--small"] if small else [])]
        on_line(f"building {case_study} version {track.version} ({'small' if small else 'full size'}) -> {out}")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            line = line.rstrip()
            if line:
                tail = (tail + [line])[-20:]
                on_line(line)
        if process.wait() != 0:
            raise PlanError(f"`{' '.join(command[2:])}` failed:\n" + "\n".join(tail))
        if not track.variant_dir(runtime).is_dir():
            raise PlanError(f"`mlsd build` finished but {track.variant_dir(runtime)} does not exist")
        done.add(track.root)
