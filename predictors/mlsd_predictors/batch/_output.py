"""The results directory of batch runs, where a run is complete or absent, never half-written.

    <output>/
      .staging/<run>/part-00000-of-00004.npz   shards being written (each part via temp file + rename)
      runs/<run>/part-*.npz, manifest.json     complete runs only: the staging dir is renamed here
      latest -> runs/<run>                      symlink, replaced atomically after each complete run

Readers use `latest` (or a `runs/<run>` they know). A run that fails or is interrupted leaves only
its `.staging/<run>`: `latest` still points at the previous complete run. Parts are idempotent, so
a retried shard rewrites its own part with the same rows; the shard that finds every part present
commits (the rename is atomic; a second committer finds the run already there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
STALE_STAGING_SECONDS = 7 * 24 * 3600


@dataclass
class RunManifest:
    run: str
    case_study: str
    model_version: str
    precision: str
    input: str
    input_sha256: str
    rows: int
    shards: int
    batch_size: int
    outputs: dict[str, dict[str, Any]]          # name -> {"datatype", "shape"} (shape without rows)
    parts: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)   # file -> facts (e.g. a rebuilt index)
    committed_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def part_name(shard: int, shards: int) -> str:
    return f"part-{shard:05d}-of-{shards:05d}.npz"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class BatchOutput:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging = self.root / ".staging"
        self.runs = self.root / "runs"
        self.latest = self.root / "latest"

    def committed(self, run: str) -> bool:
        return (self.runs / run / MANIFEST).is_file()

    def write_part(self, run: str, shard: int, shards: int, arrays: dict[str, np.ndarray]) -> Path:
        directory = self.staging / run
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / part_name(shard, shards)
        _atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    def read_parts(self, run: str, shards: int) -> dict[str, np.ndarray]:
        """The staged parts of `run`, concatenated in row order."""
        chunks: dict[str, list[np.ndarray]] = {}
        for i in range(shards):
            with np.load(self.staging / run / part_name(i, shards)) as part:
                for name in part.files:
                    chunks.setdefault(name, []).append(part[name])
        return {name: np.concatenate(values) for name, values in chunks.items()}

    def parts_present(self, run: str, shards: int) -> bool:
        directory = self.staging / run
        return all((directory / part_name(i, shards)).is_file() for i in range(shards))

    def commit(self, manifest: RunManifest, keep_runs: int) -> bool:
        """Moves a fully written run into runs/ and points `latest` at it; False if already committed."""
        if self.committed(manifest.run):
            return False
        directory = self.staging / manifest.run
        manifest.parts = []
        for i in range(manifest.shards):
            path = directory / part_name(i, manifest.shards)
            with np.load(path) as part:
                rows = int(len(next(iter(part.values())))) if part.files else 0
            manifest.parts.append({"file": path.name, "rows": rows, "sha256": file_sha256(path)})
        if sum(p["rows"] for p in manifest.parts) != manifest.rows:
            raise RuntimeError(f"run {manifest.run}: parts hold {sum(p['rows'] for p in manifest.parts)} rows, "
                               f"the input has {manifest.rows}; not committing")
        manifest.committed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _atomic_write(directory / MANIFEST, lambda f: f.write(manifest.to_json().encode()))
        _fsync_dir(directory)
        self.runs.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(directory, self.runs / manifest.run)
        except OSError:
            if self.committed(manifest.run):     # another shard committed it first
                return False
            raise
        _fsync_dir(self.runs)
        link = self.root / f".latest.tmp-{os.getpid()}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(Path("runs") / manifest.run, link)
        os.replace(link, self.latest)
        _fsync_dir(self.root)
        self.prune(keep_runs)
        return True

    def prune(self, keep_runs: int) -> None:
        """Keeps the newest `keep_runs` complete runs (never the one `latest` names) and drops
        staging dirs abandoned long ago."""
        current = latest_run(self.root)
        runs = sorted((p for p in self.runs.iterdir() if (p / MANIFEST).is_file()),
                      key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True) if self.runs.is_dir() else []
        for old in runs[keep_runs:]:
            if old.name != current:
                shutil.rmtree(old, ignore_errors=True)
        if self.staging.is_dir():
            for stale in self.staging.iterdir():
                if time.time() - stale.stat().st_mtime > STALE_STAGING_SECONDS:
                    shutil.rmtree(stale, ignore_errors=True)


def latest_run(root: Path) -> str | None:
    link = Path(root) / "latest"
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def read_run(root: Path, run: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and the concatenated outputs of a complete run (default: latest)."""
    root = Path(root)
    run = run or latest_run(root)
    if run is None:
        raise FileNotFoundError(f"{root}: no complete batch run yet")
    directory = root / "runs" / run
    manifest = json.loads((directory / MANIFEST).read_text())
    arrays: dict[str, list[np.ndarray]] = {}
    for part in manifest["parts"]:
        with np.load(directory / part["file"]) as data:
            for name in data.files:
                arrays.setdefault(name, []).append(data[name])
    return manifest, {name: np.concatenate(chunks) for name, chunks in arrays.items()}
