"""`mlsd batch FILE`: a ModelDeployment's `spec.batch`, run on this machine with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mlsd_predictors.serve._plan import DEFAULT_MODELS_DIR, PlanError, load_manifest, local_root


def local_data_path(uri: str, data_dir: Path) -> Path:
    """file:///abs/path -> that path; pvc://<claim>/<path> -> <data_dir>/<path>."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.netloc + parsed.path)
    return data_dir / parsed.path.lstrip("/")


def batch(
    file: Path = typer.Argument(..., help="ModelDeployment manifest with spec.batch."),
    models_dir: Path = typer.Option(DEFAULT_MODELS_DIR, "--models-dir",
                                    help="Where the model's pvc:// storageUri points locally (as for `mlsd serve`)."),
    data_dir: Path = typer.Option(Path("."), "--data-dir",
                                  help="Where batch.input/output pvc:// URIs point locally (pvc://claim/<path> -> DIR/<path>)."),
    run: str = typer.Option(None, "--run", help="Run id (default: local-<UTC timestamp>)."),
    shards: int = typer.Option(None, "--shards", min=1, help="Shards (default: batch.parallelism), run in turn."),
) -> None:
    """Score spec.batch.input with the stable model; results appear in spec.batch.output complete or not at all."""
    from ._run import BatchError, BatchJob, input_rows, run_shard

    console = Console(stderr=True)
    try:
        mdep = load_manifest(file)
        if mdep.spec.batch is None:
            raise PlanError(f"{file}: no spec.batch to run")
        root = local_root(mdep.spec.model, mdep.spec.case_study.value, models_dir)
    except PlanError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    spec = mdep.spec.batch
    job = BatchJob(
        case_study=mdep.spec.case_study.value,
        model_dir=root / "kserve" / mdep.spec.model.precision.value,
        input=local_data_path(spec.input, data_dir), output=local_data_path(spec.output, data_dir),
        run=run or time.strftime("local-%Y%m%d-%H%M%S", time.gmtime()),
        batch_size=spec.batch_size, shards=shards or spec.parallelism, keep_runs=spec.keep_runs)
    if not job.input.is_file():
        console.print(f"[red]batch.input {spec.input} -> {job.input}: no such file[/red]")
        raise typer.Exit(2)
    rows = input_rows(job.input)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    started = time.perf_counter()
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"{mdep.metadata.name} v{mdep.spec.model.version} rows", total=rows)
            results = [run_shard(job, shard, lambda n: progress.advance(task, n)) for shard in range(job.shards)]
    except BatchError as err:
        console.print(f"[red]mlsd batch: {err}[/red]\nnothing was committed; {job.output}/latest is unchanged",
                      soft_wrap=True)
        raise typer.Exit(1) from None
    seconds = time.perf_counter() - started
    if all(r.skipped for r in results):
        console.print(f"run {job.run} was already complete in {job.output}")
        return
    console.print(f"[green]run {job.run}[/green]: {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):.0f} rows/s)"
                  f" -> {job.output / 'runs' / job.run} (latest)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
