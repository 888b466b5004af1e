"""`mlsd build`: train -> export -> parity -> variants -> evaluate -> write, per case study."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from mlsd_contract import (
    CASE_STUDIES, KSERVE_LAYOUT, PRECISIONS, TRITON_LAYOUT, TRITON_PYTHON_LAYOUT, Precision, repository_root,
)

from .._card import (
    DEFAULT_MAX_RELATIVE_DROP, GraphCard, Histogram, MeasuredOn, ModelCard, QualityGate, RepositoryCard, SelfCheck,
    VariantSummary,
)
from .._errors import ParityError, RepositoryExistsError
from .._host import host
from ..casestudies import CaseStudy, Evaluation, Graph, case_study
from . import _onnx, _quantize
from ._repository import write_repository


@dataclass(frozen=True)
class BuildOptions:
    version: int
    out: Path
    small: bool = False
    seed: int = 0
    max_relative_drop: float = DEFAULT_MAX_RELATIVE_DROP
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError(f"version must be a positive integer, got {self.version}")
        if not 0 <= self.max_relative_drop < 1:
            raise ValueError(f"max_relative_drop must be in [0, 1), got {self.max_relative_drop}")

    @property
    def latency_repeats(self) -> int:
        return 10 if self.small else 50


class Reporter(Protocol):
    def stage(self, case: str, message: str) -> None: ...
    def epoch(self, case: str, stage: str, epoch: int, epochs: int, loss: float) -> None: ...


class SilentReporter:
    def stage(self, case: str, message: str) -> None:
        pass

    def epoch(self, case: str, stage: str, epoch: int, epochs: int, loss: float) -> None:
        pass


@dataclass
class _Variant:
    precision: Precision
    directory: Path
    graphs: list[GraphCard]
    evaluation: Evaluation
    self_check: SelfCheck


SELF_CHECK_FILE = "self-check.npz"
SELF_CHECK_ROWS = 16
GATE_RESAMPLES = 1000
GATE_CONFIDENCE = 0.95


def relative_drop(metric: str, value: float, reference: float, lower_is_better: frozenset[str]) -> float:
    """How much worse `value` is than `reference`, relative (positive = worse)."""
    worse = value - reference if metric in lower_is_better else reference - value
    return worse / max(abs(reference), 1e-12)


def _make_variants(graphs: list[Graph], work: Path) -> dict[Precision, tuple[Path, dict[str, str]]]:
    """Exports fp32 (checking parity with torch) and derives fp16/int8: precision -> (dir, quantization per file)."""
    dirs = {p: work / p for p in PRECISIONS}
    for d in dirs.values():
        d.mkdir()
    notes: dict[Precision, dict[str, str]] = {p: {} for p in PRECISIONS}
    for graph in graphs:
        fp32 = dirs["fp32"] / graph.file
        _onnx.export(graph, fp32)
        error, _, close = _onnx.parity(_onnx.torch_outputs(graph), _onnx.OnnxRunner(fp32)(graph.example_inputs))
        if not close:
            raise ParityError(
                f"{graph.file}: onnxruntime differs from torch by up to {error:.3g} "
                f"(rtol {_onnx.PARITY_RTOL}, atol {_onnx.PARITY_ATOL})"
            )
        notes["fp32"][graph.file] = "none (fp32)"
        notes["fp16"][graph.file] = _quantize.to_fp16(fp32, dirs["fp16"] / graph.file)
        notes["int8"][graph.file] = _quantize.to_int8(graph, fp32, dirs["int8"] / graph.file)
    return {p: (dirs[p], notes[p]) for p in PRECISIONS}


def _measure(case: CaseStudy, graphs: list[Graph], precision: Precision, directory: Path, notes: dict[str, str],
             expected: dict[str, dict], repeats: int) -> _Variant:  # fmt: skip
    runners = {g.role: _onnx.OnnxRunner(directory / g.file) for g in graphs}
    evaluation = case.evaluate(runners, precision)
    for artifact in evaluation.artifacts:
        artifact.write(directory / artifact.name)
    cards = []
    for g in graphs:
        runner = runners[g.role]
        error, mean_error, _ = _onnx.parity(expected[g.file], runner(g.example_inputs))
        cards.append(GraphCard(
            role=g.role, file=g.file, signature=runner.signature(), size_bytes=(directory / g.file).stat().st_size,
            parity_max_abs_error=error, parity_mean_abs_error=mean_error,
            latency_ms=runner.latency(g.example_inputs, repeats), quantization=notes[g.file],
        ))  # fmt: skip
    return _Variant(precision, directory, cards, evaluation, _record_self_check(graphs, runners, expected, directory))


def _record_self_check(graphs: list[Graph], runners: dict[str, _onnx.OnnxRunner], expected: dict[str, dict],
                       directory: Path) -> SelfCheck:  # fmt: skip
    """Golden rows for the load-time self-check: held-out inputs and this variant's outputs, as one batch
    (dynamic int8 quantizes activations per batch, so the batch is part of the recorded computation).

    The tolerance is half of what quantization itself costs on these rows (|variant - torch fp32|): a
    serving CPU whose kernels compute this variant differently by that much (int8 saturation on CPUs
    without VNNI, a different onnxruntime) is not serving the model the quality gate measured."""
    arrays: dict[str, np.ndarray] = {}
    tolerance: dict[str, float] = {}
    for g in graphs:
        feeds = {k: np.ascontiguousarray(v[:SELF_CHECK_ROWS]) for k, v in g.example_inputs.items()}
        outputs = runners[g.role](feeds)
        quantization_error, scale = 0.0, 0.0
        for name, value in outputs.items():
            reference = expected[g.file][name][:SELF_CHECK_ROWS].astype(np.float64)
            quantization_error = max(quantization_error, float(np.abs(value.astype(np.float64) - reference).max()))
            scale = max(scale, float(np.abs(reference).max()))
            arrays[f"{g.file}|out|{name}"] = value
        arrays.update({f"{g.file}|in|{name}": value for name, value in feeds.items()})
        tolerance[g.file] = float(f"{max(0.5 * quantization_error, 1e-4 * max(scale, 1.0)):.3g}")
    np.savez(directory / SELF_CHECK_FILE, **arrays)
    return SelfCheck(file=SELF_CHECK_FILE, rows=SELF_CHECK_ROWS, tolerance=tolerance)


def quality_gate(case: CaseStudy, variant: Evaluation, fp32: Evaluation, threshold: float, *,
                 resamples: int = GATE_RESAMPLES, seed: int = 0) -> QualityGate:  # fmt: skip
    """The primary metric's drop vs fp32 and its one-sided upper confidence bound.

    The bound comes from a paired bootstrap: each resample draws held-out examples with replacement and
    scores the same draw with fp32 and with the variant, so the noise both share (which examples are
    hard) cancels and what remains is how much the variant's own changes could move the metric. A
    variant is servable only when the bound is within the threshold: a drop of 0.4% measured over 150
    queries does not show a variant is within 1%."""
    metric = case.primary_metric
    drop = relative_drop(metric, variant.metrics[metric], fp32.metrics[metric], case.lower_is_better)
    upper = drop
    if variant is not fp32 and variant.primary_on is not None and fp32.primary_on is not None:
        rng = np.random.default_rng(seed)
        n = variant.examples
        drops = []
        for _ in range(resamples):
            rows = rng.integers(0, n, n)
            drops.append(relative_drop(metric, variant.primary_on(rows), fp32.primary_on(rows), case.lower_is_better))
        upper = max(drop, float(np.quantile(drops, GATE_CONFIDENCE)))
    return QualityGate(metric=metric, examples=variant.examples, drop=round(drop, 6), drop_upper=round(upper, 6),
                       resamples=resamples if variant is not fp32 else 0, threshold=threshold)


def build_case_study(name: str, options: BuildOptions, reporter: Reporter | None = None) -> RepositoryCard:
    """Builds one case study into `<out>/<name>/<version>` and returns its summary card."""
    reporter = reporter or SilentReporter()
    root = repository_root(options.out, name, options.version)
    if root.exists() and not options.overwrite:  # fail before training, not after
        raise RepositoryExistsError(f"{root} exists; versions are immutable (pass --overwrite to replace it)")
    started, build_time = time.perf_counter(), datetime.now(UTC)
    case = case_study(name, small=options.small, seed=options.seed)
    reporter.stage(name, "generating data and training")
    case.train(lambda stage, epoch, epochs, loss: reporter.epoch(name, stage, epoch, epochs, loss))
    graphs = case.graphs()
    expected = {g.file: _onnx.torch_outputs(g) for g in graphs}
    baseline = case.baseline_metrics()

    with tempfile.TemporaryDirectory(prefix=f"mlsd-build-{name}-") as work:
        reporter.stage(name, "exporting to ONNX, checking parity, quantizing")
        built = _make_variants(graphs, Path(work))
        measured: dict[Precision, _Variant] = {}
        for precision, (directory, notes) in built.items():
            reporter.stage(name, f"evaluating {precision}")
            measured[precision] = _measure(case, graphs, precision, directory, notes, expected, options.latency_repeats)

        reporter.stage(name, "writing the repository")
        reference = measured["fp32"].evaluation
        seconds = round(time.perf_counter() - started, 2)
        cards = {p: _card(case, options, v, reference, baseline, build_time, seconds) for p, v in measured.items()}
        summary = RepositoryCard(
            case_study=name, version=options.version, summary=case.summary, primary_metric=case.primary_metric,
            baseline_metrics=baseline, max_relative_drop=options.max_relative_drop, data_seed=options.seed,
            small=options.small, training=case.training_config(), build_time=build_time, build_seconds=seconds,
            variants=[_variant_summary(card) for card in cards.values()],
        )  # fmt: skip
        write_repository(
            options.out, summary, {p: (cards[p], measured[p].directory) for p in PRECISIONS},
            case.triton_steps(), overwrite=options.overwrite,
        )  # fmt: skip
    return summary


def _card(case: CaseStudy, options: BuildOptions, variant: _Variant, fp32: Evaluation,
          baseline: dict[str, float], build_time: datetime, seconds: float) -> ModelCard:  # fmt: skip
    metrics = variant.evaluation.metrics
    drops = {m: round(relative_drop(m, v, fp32.metrics[m], case.lower_is_better), 6) for m, v in metrics.items()}
    gate = quality_gate(case, variant.evaluation, fp32, options.max_relative_drop, seed=options.seed)
    servable = gate.drop_upper <= options.max_relative_drop
    files = {p.name: p.stat().st_size for p in sorted(variant.directory.iterdir())}
    model = variant.graphs[0]
    return ModelCard(
        case_study=case.name, version=options.version, precision=variant.precision, summary=case.summary,
        signature=model.signature, labels=case.labels(), graphs=variant.graphs, primary_metric=case.primary_metric,
        metrics=metrics, baseline_metrics=baseline, relative_drop=drops,
        parity_max_abs_error=max(g.parity_max_abs_error for g in variant.graphs), latency_ms=model.latency_ms,
        size_bytes=sum(files.values()), files=files, training=case.training_config(), data_seed=options.seed,
        small=options.small, build_time=build_time, build_seconds=seconds, max_relative_drop=options.max_relative_drop,
        servable=servable,
        not_servable_reason=None if servable else gate_reason(gate),
        reference_distribution={k: Histogram.model_validate(v) for k, v in variant.evaluation.reference.items()},
        measured_on=MeasuredOn.model_validate(host()), gate=gate, self_check=variant.self_check,
    )  # fmt: skip


def gate_reason(gate: QualityGate) -> str:
    if gate.drop > gate.threshold:
        return (f"{gate.metric} is {gate.drop:.2%} worse than fp32 (relative), over the {gate.threshold:.2%} "
                "threshold")
    return (f"{gate.metric} is {gate.drop:.2%} worse than fp32 (relative), but {gate.examples} held-out examples "
            f"cannot show it is within the {gate.threshold:.2%} threshold (95% upper bound {gate.drop_upper:.2%}); "
            "evaluate on more held-out data (build without --small) or serve fp32")


def _variant_summary(card: ModelCard) -> VariantSummary:
    p = card.precision
    return VariantSummary(
        precision=p, servable=card.servable, not_servable_reason=card.not_servable_reason, metrics=card.metrics,
        relative_drop=card.relative_drop, parity_max_abs_error=card.parity_max_abs_error,
        latency_ms=card.latency_ms, size_bytes=card.size_bytes,
        paths={"kserve": f"{KSERVE_LAYOUT}/{p}", "triton": f"{TRITON_LAYOUT}/{p}",
               "tritonPython": f"{TRITON_PYTHON_LAYOUT}/{p}"},
    )  # fmt: skip


def build_all(options: BuildOptions, reporter: Reporter | None = None) -> list[RepositoryCard]:
    return [build_case_study(name, options, reporter) for name in CASE_STUDIES]
