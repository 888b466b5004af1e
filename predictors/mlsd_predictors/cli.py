"""`mlsd build`: train, export, quantize, evaluate and publish the case-study models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlsd_contract import CASE_STUDIES, repository_root

from ._card import DEFAULT_MAX_RELATIVE_DROP
from ._errors import PredictorError

if TYPE_CHECKING:
    from ._card import RepositoryCard

console = Console()
_CASE_HELP = f"Case study: {', '.join(CASE_STUDIES)}."
_DROP_HELP = "Largest relative drop of the primary metric vs fp32 for a servable variant."


class _ProgressReporter:
    """Shows each case study's stage (and training epochs) as a rich progress line."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def _task(self, case: str) -> TaskID:
        if case not in self.tasks:
            self.tasks[case] = self.progress.add_task(case, total=None)
        return self.tasks[case]

    def stage(self, case: str, message: str) -> None:
        self.progress.update(self._task(case), description=f"{case}: {message}", total=None, completed=0)

    def epoch(self, case: str, stage: str, epoch: int, epochs: int, loss: float) -> None:
        description = f"{case}: training {stage}, epoch {epoch}/{epochs}, loss {loss:.4f}"
        self.progress.update(self._task(case), description=description, total=epochs, completed=epoch)

    def done(self, case: str) -> None:
        self.progress.update(self._task(case), description=f"{case}: done", total=1, completed=1)


def _summary_table(card: RepositoryCard, out: Path) -> Table:
    metric = card.primary_metric
    table = Table(title=f"{card.case_study} v{card.version} -> {repository_root(out, card.case_study, card.version)}")
    for column in ("variant", metric, "drop vs fp32", "servable", "parity err", "b1 ms", "b64 ms", "size"):
        table.add_column(column, justify="left" if column in ("variant", "servable") else "right")
    for v in card.variants:
        table.add_row(
            v.precision, f"{v.metrics[metric]:.4f}", f"{v.relative_drop[metric]:+.2%}",
            "yes" if v.servable else "[red]no[/red]", f"{v.parity_max_abs_error:.1e}",
            f"{v.latency_ms.batch1:.3f}", f"{v.latency_ms.batch64:.3f}", f"{v.size_bytes / 1e6:.2f} MB",
        )  # fmt: skip
    baseline = card.baseline_metrics.get(metric)
    table.caption = f"trivial baseline {metric}: {baseline:.4f}" if baseline is not None else None
    return table


def register(app: typer.Typer) -> None:
    """Adds the predictor commands to the `mlsd` app."""

    @app.command("build")
    def build(
        version: Annotated[int, typer.Option("--version", min=1, help="Model version (positive integer).")],
        out: Annotated[Path, typer.Option("--out", help="Repository root; writes <out>/<case>/<version>.")],
        case: Annotated[str | None, typer.Argument(help=_CASE_HELP, show_default=False)] = None,
        all_cases: Annotated[bool, typer.Option("--all", help="Build every case study.")] = False,
        small: Annotated[bool, typer.Option("--small", help="Small data and few epochs (seconds; for tests).")] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed for data generation and training.")] = 0,
        max_drop: Annotated[float, typer.Option("--max-drop", min=0.0, max=0.99, help=_DROP_HELP)] = DEFAULT_MAX_RELATIVE_DROP,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing version.")] = False,
    ) -> None:
        """Train, export to ONNX, make fp32/fp16/int8 variants, evaluate them and write the model repository."""
        if all_cases == (case is not None):
            raise typer.BadParameter("give one CASE or --all")
        if case is not None and case not in CASE_STUDIES:
            raise typer.BadParameter(f"unknown case study {case!r}; choose one of {', '.join(CASE_STUDIES)}")
        from .build import BuildOptions, build_case_study  # torch is imported only when building

        options = BuildOptions(
            version=version, out=out, small=small, seed=seed, max_relative_drop=max_drop, overwrite=overwrite
        )
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        cards = []
        try:
            for name in CASE_STUDIES if all_cases else (case,):
                with Progress(*columns, console=console, transient=False) as progress:
                    reporter = _ProgressReporter(progress)
                    cards.append(build_case_study(name, options, reporter))
                    reporter.done(name)
                console.print(_summary_table(cards[-1], out))
        except PredictorError as error:
            console.print(f"[red]build failed:[/red] {error}")
            raise typer.Exit(1) from error

    from .serve import _cli as serve_cli; serve_cli.register(app)   # `mlsd serve` (predictor servers work)
    from .batch import _cli as batch_cli; batch_cli.register(app)   # `mlsd batch` (spec.batch locally)
