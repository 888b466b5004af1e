"""Markdown tables of a built repository's figures, read from its cards (for docs and the README)."""

from __future__ import annotations

from pathlib import Path

from ._card import load_repository_card
from mlsd_contract import CASE_STUDIES, repository_root


def figures_table(out: Path | str, version: int) -> str:
    """One row per case study and precision: primary metric, drop, servable, latency, size."""
    rows = [
        "| case study | metric | variant | value | drop vs fp32 | servable | latency b1 (ms) | latency b64 (ms) "
        "| size (MB) | parity max abs err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in CASE_STUDIES:
        card = load_repository_card(repository_root(Path(out), case, version))
        metric = card.primary_metric
        for v in card.variants:
            rows.append(
                f"| {case} | {metric} | {v.precision} | {v.metrics[metric]:.4f} | {v.relative_drop[metric]:+.2%} | "
                f"{'yes' if v.servable else 'no'} | {v.latency_ms.batch1:.3f} | {v.latency_ms.batch64:.3f} | "
                f"{v.size_bytes / 1e6:.2f} | {v.parity_max_abs_error:.1e} |"
            )
    return "\n".join(rows) + "\n"


def quality_table(out: Path | str, version: int) -> str:
    """fp32 metrics of each case study beside its trivial baselines."""
    rows = ["| case study | fp32 metrics | trivial baselines | build (s) |", "|---|---|---|---|"]
    for case in CASE_STUDIES:
        card = load_repository_card(repository_root(Path(out), case, version))
        fp32 = card.variants[0].metrics
        fmt = lambda metrics: ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())  # noqa: E731
        rows.append(f"| {case} | {fmt(fp32)} | {fmt(card.baseline_metrics)} | {card.build_seconds:.0f} |")
    return "\n".join(rows) + "\n"
