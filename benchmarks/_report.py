"""Writing the results: one Markdown report, one JSON file, PNG plots, from the parts' result dicts.

Pure functions of the results (no measuring here), so tests/unit/test_benchmarks.py runs them on
small real inputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks._env import one_line
from benchmarks._stats import describe_growth


def spread(s: dict | None, digits: int = 1, scale: float = 1.0) -> str:
    """`median (min-max)` of a summarize() dict; the median alone for one run; '-' for nothing."""
    if not s or not s.get("n") or math.isnan(s["median"]):
        return "-"
    fmt = f"{{:,.{digits}f}}"
    med = fmt.format(s["median"] * scale)
    if s["n"] == 1 or s["min"] == s["max"]:
        return med
    return f"{med} ({fmt.format(s['min'] * scale)}-{fmt.format(s['max'] * scale)})"


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def ratio(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}x"


# -- Markdown -------------------------------------------------------------------------------------

def serving_markdown(result: dict) -> list[str]:
    m = result["matrix"]
    lines = [f"Model size: {result['model_size']} ({result['models']}); {m['seconds']} s measured per cell after "
             f"{m['warmup']} s warm-up, {m['repeat']} repeat(s) interleaved; one-row requests, closed loop. "
             "Cells: median (min-max) over repeats. CPU ms/req: the server's processes (tritonserver with its "
             "Python-backend stubs; for in-process, the benchmark process itself); RSS the same processes "
             "at the end of the window. x ceiling: req/s / in-process onnxruntime (same precision, concurrency); "
             "x triton: req/s / tritonserver (same precision, batching, protocol, concurrency). All in the same run.",
             "", "Trimmed to fit the time budget: " + "; ".join(result["trimmed"]) + "."]
    cases = list(dict.fromkeys(r["case"] for r in result["rows"]))
    for case in cases:
        lines += ["", f"#### {case}", "",
                  "| precision | batching | runtime | protocol | c | req/s | p50 ms | p95 ms | p99 ms | CPU ms/req "
                  "| RSS MiB | x ceiling | x triton | errors |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in result["rows"] if r["case"] == case):
            lines.append(
                f"| {r['precision']} | {'on' if r['batching'] else 'off'} | {r['runtime']} | {r['protocol']} "
                f"| {r['concurrency']} | {spread(r['rps'], 0)} | {spread(r['p50_ms'], 2)} | {spread(r['p95_ms'], 2)} "
                f"| {spread(r['p99_ms'], 2)} | {spread(r['cpu_ms_per_request'], 3)} | {spread(r['rss_mib'], 0)} "
                f"| {ratio(r['x_ceiling'])} | {ratio(r['x_triton']) if r['runtime'] != 'triton' else '1.00x'} "
                f"| {r['errors']} |")
    return lines


def operator_markdown(result: dict) -> list[str]:
    lines = ["N Triton ModelDeployments applied at once (`kubectl apply --server-side`) into a fresh namespace; "
             "cells: median (min-max) over runs. children: every Deployment exists; Ready: every status.phase "
             "Ready (pods on kwok nodes); direct: the same rendered children applied with kubectl, no operator. "
             "API requests: the operator ServiceAccount's requests in the API server's audit log during the phase "
             "(watches count when they end), per ModelDeployment and per reconcile "
             "(`mlsd_operator_reconciles_total`). change: every object's spec.autoscaling.maxReplicas patched "
             "once, back to back; latency from each patch to its HPA carrying the value.",
             "", "Trimmed to fit the time budget: " + "; ".join(result["trimmed"]) + ".",
             f"Operator RSS after warm-up (1 ModelDeployment): {result['idle_rss_mib']:.0f} MiB.", "",
             "| N | runs | children (s) | Ready (s) | direct (s) | x direct | API req / mdep | API req / reconcile "
             "| operator CPU (s) | RSS peak MiB | change p50 ms | change p99 ms | all changed (s) "
             "| API req / reconcile (change) | CPU ms / change |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {r['runs']} | {spread(r['children_s'])} | {spread(r['ready_s'])} "
            f"| {spread(r['direct_ready_s'])} | {ratio(r['x_direct'])} | {spread(r['apply_api_per_mdep'])} "
            f"| {spread(r['apply_api_per_reconcile'])} | {spread(r['apply_cpu_s'])} | {spread(r['rss_peak_mib'], 0)} "
            f"| {spread(r['change_p50_ms'], 0)} | {spread(r['change_p99_ms'], 0)} | {spread(r['change_all_s'])} "
            f"| {spread(r['change_api_per_reconcile'])} | {spread(r['change_cpu_ms_per_mdep'], 0)} |")
    labels = {"ready_s": "time to all Ready", "children_s": "time to all children", "apply_cpu_s": "operator CPU",
              "rss_peak_mib": "operator peak RSS", "change_p99_ms": "change p99 latency",
              "change_all_s": "time to all changes applied"}
    lines += ["", "How cost grows with N (least-squares exponent b of cost = a * N^b on the medians; per step, "
              "(cost ratio) / (N ratio): 1.00x is linear):", ""]
    for name, fit in result["growth"].items():
        lines.append(f"- {labels.get(name, name)}: {describe_growth(fit)}")
    failures = [(r["n"], r.get("handler_failures") or {}) for r in result["rows"]]
    if any(f for _, f in failures):
        lines += ["", "**Handler failures the operator logged** (kopf retries a failed handler after its back-off, "
                  "60 s unless the handler says otherwise: the times above include those waits):", ""]
        for n, found in failures:
            for what, count in found.items():
                lines.append(f"- N={n}: {count} x {what}")
    else:
        lines += ["", "The operator logged no handler failures during the series."]
    if result["rows"]:
        verbs = result["rows"][-1]["apply_api_by_verb"]
        top = ", ".join(f"{k} {v}" for k, v in list(verbs.items())[:8])
        lines += ["", f"Operator requests at N={result['rows'][-1]['n']} (apply phase, first run): {top}."]
    return lines


def rollout_markdown(result: dict) -> list[str]:
    t = result["timings"]
    lines = [f"Analysis timings: interval {t['interval_s']} s, steps {t['steps']}, operator rollout tick "
             f"{t['tick_s']} s, Prometheus scrape/evaluation {t['scrape_s']} s, traffic {t['traffic_rps']:g} req/s; "
             f"analysis minRequests {t['min_requests']}, maxErrorRate {t['max_error_rate']}, maxLatencyP99Ms "
             f"{t['max_latency_p99_ms']}, maxPredictionDrift {t['max_prediction_drift']}, failureLimit "
             f"{t['failure_limit']}. Floor: the time the timings alone impose (steps x interval to promote, "
             "failureLimit x interval to roll back).", "",
             "| canary | outcome | time from canary spec (s) | floor (s) | over the floor (s) "
             "| dark: spec to first traffic (s) | reason | requests stable/canary |", "|---|---|---:|---:|---:|---:|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['canary']} | {r['outcome']} | {r['seconds']:.1f} | {r['floor_s']:.0f} | "
                     f"{r['overhead_s']:.1f} | {_seconds(r.get('dark_s'))} | {r['reason']} | "
                     f"{r['requests_stable']}/{r['requests_canary']} |")
    return lines


def frontdoor_markdown(result: dict) -> list[str]:
    s = result["setup"]
    lines = [f"`mlsd serve` front door vs the predictor it started, ad-click-prediction fp32, one-row requests, "
             f"{s['seconds']} s per cell after {s['warmup']} s warm-up, {s['repeat']} repeat(s) interleaved. "
             "extra: front door minus direct, per repeat, median (min-max). CPU: front door + predictor vs "
             "predictor alone.", "",
             "| protocol | c | direct req/s | front door req/s | x direct | direct p50 / p99 ms "
             "| front door p50 / p99 ms | extra p50 ms | extra p99 ms | extra CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['protocol']} | {r['concurrency']} | {spread(r['direct_rps'], 0)} | {spread(r['frontdoor_rps'], 0)} "
            f"| {spread(r['x_direct_rps'], 2)} | {spread(r['direct_p50_ms'], 2)} / {spread(r['direct_p99_ms'], 2)} "
            f"| {spread(r['frontdoor_p50_ms'], 2)} / {spread(r['frontdoor_p99_ms'], 2)} "
            f"| {spread(r['extra_p50_ms'], 2)} | {spread(r['extra_p99_ms'], 2)} "
            f"| {spread(r['extra_cpu_ms_per_request'], 3)} |")
    return lines


SECTIONS = (("serving", "Serving", serving_markdown), ("operator", "Operator at scale", operator_markdown),
            ("rollout", "Rollout", rollout_markdown), ("frontdoor", "Front door overhead", frontdoor_markdown))


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# mlsd-serving benchmarks ({results['mode']})", "",
             f"`{results['command']}`, started {env['date']}, took {results['total_s'] / 60:.1f} min.", "",
             f"- Machine: {one_line(env, gpu=False)}", f"- GPU: {env['gpu']}",
             f"- Load average at start / end: {env['load_average_at_start']} / {results.get('load_average_at_end')}",
             "- Method: every part warms up before it measures; repeated runs report the median and the "
             "min-max spread; every ratio divides two figures measured in the same run on the same machine.",
             ]
    if results.get("note"):
        lines.append(f"- Note: {results['note']}")
    for key, title, render in SECTIONS:
        part = results["parts"].get(key)
        if part is None:
            continue
        seconds = results["durations_s"].get(key)
        lines += ["", f"## {title}" + (f" ({seconds:.0f} s)" if seconds is not None else ""), ""]
        lines += [f"Failed: {part['error']}"] if "error" in part else render(part)
    for key, title, _ in SECTIONS:
        if key not in results["parts"]:
            lines += ["", f"## {title}", "", "Not run (--parts)."]
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str, allow_nan=True))
    (out / "results.md").write_text(markdown(results))
    return [out / "results.md", out / "results.json", *plots(results, out)]


# -- plots ----------------------------------------------------------------------------------------

def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("the benchmark plots need matplotlib: pip install -c constraints.txt "
                          "'mlsd-serving[bench]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _errorbar(ax, xs, summaries, label, **kw):
    med = [s["median"] for s in summaries]
    low = [s["median"] - s["min"] for s in summaries]
    high = [s["max"] - s["median"] for s in summaries]
    ax.errorbar(xs, med, yerr=[low, high], label=label, marker="o", capsize=3, **kw)


def plots(results: dict, out: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    serving = results["parts"].get("serving")
    if serving and "rows" in serving and serving["rows"]:
        rows = serving["rows"]
        cases = list(dict.fromkeys(r["case"] for r in rows))
        for metric, ylabel, name in (("rps", "requests/s (log)", "serving_throughput.png"),
                                     ("p99_ms", "p99 latency ms (log)", "serving_p99.png")):
            fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
            for ax, case in zip(axes[0], cases, strict=True):
                for runtime, protocol in (("onnxruntime", "in-process"), ("kserve", "http"), ("kserve", "grpc"),
                                          ("triton", "http"), ("triton", "grpc")):
                    sel = sorted((r for r in rows if r["case"] == case and r["precision"] == "fp32" and r["batching"]
                                  and r["runtime"] == runtime and r["protocol"] == protocol),
                                 key=lambda r: r["concurrency"])
                    if sel:
                        _errorbar(ax, [r["concurrency"] for r in sel], [r[metric] for r in sel],
                                  f"{runtime} {protocol}")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(f"{case} (fp32)")
                ax.set_xlabel("concurrency")
                ax.set_ylabel(ylabel)
                ax.grid(True, which="both", alpha=0.3)
            axes[0][0].legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            written.append(out / name)
        # Variants: precision (at one concurrency) and batching off (at another), req/s as bars.
        fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
        pc, bc = serving["matrix"]["precision_concurrency"], serving["matrix"]["batching_concurrency"]
        for ax, case in zip(axes[0], cases, strict=True):
            groups = [(p, True, pc) for p in ["fp32", *serving["matrix"]["precisions"]]] + [("fp32", False, bc)]
            labels = [f"{p}\nc={c}" + ("" if b else "\nno batching") for p, b, c in groups]
            for i, runtime in enumerate(("onnxruntime", "kserve", "triton")):
                values = []
                for p, b, c in groups:
                    proto = "in-process" if runtime == "onnxruntime" else "http"
                    match = [r for r in rows if r["case"] == case and r["precision"] == p and r["concurrency"] == c
                             and r["runtime"] == runtime and r["protocol"] == proto
                             and (r["batching"] == b or runtime == "onnxruntime")]
                    values.append(match[0]["rps"]["median"] if match else 0)
                ax.bar([x + 0.27 * (i - 1) for x in range(len(groups))], values, width=0.27, label=runtime)
            ax.set_xticks(range(len(groups)), labels, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("requests/s (log), HTTP")
            ax.set_title(case)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "serving_variants.png", dpi=100)
        plt.close(fig)
        written.append(out / "serving_variants.png")
    operator = results["parts"].get("operator")
    if operator and operator.get("rows"):
        rows = operator["rows"]
        ns = [r["n"] for r in rows]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        _errorbar(axes[0], ns, [r["ready_s"] for r in rows], "operator: all Ready")
        _errorbar(axes[0], ns, [r["children_s"] for r in rows], "operator: all children")
        direct = [(r["n"], r["direct_ready_s"]) for r in rows if r["direct_ready_s"]]
        if direct:
            _errorbar(axes[0], [n for n, _ in direct], [s for _, s in direct], "direct apply: all Available")
        axes[0].set_ylabel("seconds from apply")
        axes[0].set_title("N applied at once")
        _errorbar(axes[1], ns, [r["change_p50_ms"] for r in rows], "p50")
        _errorbar(axes[1], ns, [r["change_p99_ms"] for r in rows], "p99")
        axes[1].set_ylabel("ms from spec patch to child update")
        axes[1].set_title("reconcile latency, all N changed")
        _errorbar(axes[2], ns, [r["apply_api_per_mdep"] for r in rows], "API requests / ModelDeployment")
        _errorbar(axes[2], ns, [r["apply_api_per_reconcile"] for r in rows], "API requests / reconcile")
        axes[2].set_title("operator API requests (apply phase)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("N ModelDeployments")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_yscale("log")
        axes[1].set_yscale("log")
        fig.tight_layout()
        fig.savefig(out / "operator_scaling.png", dpi=100)
        plt.close(fig)
        written.append(out / "operator_scaling.png")
    frontdoor = results["parts"].get("frontdoor")
    if frontdoor and frontdoor.get("rows"):
        rows = frontdoor["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['protocol']} c={r['concurrency']}" for r in rows]
        xs = range(len(rows))
        for i, (path, name) in enumerate((("direct", "predictor direct"), ("frontdoor", "through the front door"))):
            ax.bar([x + 0.4 * (i - 0.5) for x in xs], [r[f"{path}_p50_ms"]["median"] for r in rows], width=0.4,
                   label=name)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("p50 latency ms")
        ax.set_title("mlsd serve front door overhead")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "frontdoor.png", dpi=100)
        plt.close(fig)
        written.append(out / "frontdoor.png")
    return written
